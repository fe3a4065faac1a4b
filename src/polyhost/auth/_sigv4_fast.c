/*
 * polyhost.auth._sigv4_fast: the accepting half of SigV4 verification, compiled.
 *
 * Why this exists: on the invocation path a Python verification costs ~7 us warm, but 20-25 us
 * inside a busy server, where every request runs after the container's process has had the
 * core and the interpreter's working set is cold. This module does the common case (a request
 * signed by an SDK exactly as it signed the previous one, but for its date, body and signature)
 * in one call over a few KB of code and data.
 *
 * It can only ACCEPT. `verify` returns the memoised result of an earlier full verification of
 * the same Authorization header (but for its signature) when every check the Python verifier
 * makes passes and the signature matches; in every other case, and whenever the request is not
 * in the plain form handled here, it returns None and the caller runs the full Python
 * verification, which then accepts or refuses with the right code and message. So there is one
 * place where refusals are decided (polyhost/auth/sigv4.py), and this file needs to agree with
 * it only on what it accepts. The tests check that agreement on botocore-signed requests and on
 * randomly mutated ones.
 *
 * The memo (a dict the Python verifier owns and fills after a successful full verification)
 * maps the raw Authorization value up to its last comma to a tuple:
 *   (signed names: tuple[bytes], signed names joined with ';': bytes, scope date YYYYMMDD:
 *    bytes, credential scope: bytes, the signing key's HMAC states (signing_states): bytes,
 *    session token: bytes | None, signing service: str, result: object)
 * Everything in it depends on that part of the header only (and on the verifier's principals
 * and region, which never change for one verifier).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <time.h>

#define MAX_HEADERS 256
#define MAX_SIGNED 64
#define MAX_CANONICAL (64 * 1024)
#define STACK_CANONICAL 8192
#define HEX_LEN 64
#define AMZ_DATE_LEN 16
/* Bodies larger than this are hashed by the caller (hashlib releases the GIL). */
#define MAX_INLINE_BODY (64 * 1024)

typedef struct {
    const char *p;
    Py_ssize_t n;
} span;

static const char HEX_DIGITS[] = "0123456789abcdef";

static void
to_hex(const unsigned char *digest, char *out)
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX_DIGITS[digest[i] >> 4];
        out[2 * i + 1] = HEX_DIGITS[digest[i] & 15];
    }
}

static int
is_lower_hex(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

static int
equals(span s, const char *literal, Py_ssize_t n)
{
    return s.n == n && memcmp(s.p, literal, (size_t)n) == 0;
}

static int
starts_with(span s, const char *literal, Py_ssize_t n)
{
    return s.n >= n && memcmp(s.p, literal, (size_t)n) == 0;
}

/* What Python's str.split() takes for whitespace among latin-1 characters, but the space;
 * plus every byte >= 0x80 (which the canonical request would carry UTF-8 encoded). A value
 * holding one is left to the Python verifier. */
static int
needs_python(unsigned char c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c >= 0x80;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int
digits(const char *p, int n, int *out)
{
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        value = value * 10 + (p[i] - '0');
    }
    *out = value;
    return 1;
}

/* YYYYMMDDTHHMMSSZ -> epoch seconds; 0 when it is not a date Python's datetime accepts. */
static int
parse_amz_date(span s, double *epoch)
{
    int year, month, day, hour, minute, second;
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s.n != AMZ_DATE_LEN || s.p[8] != 'T' || s.p[15] != 'Z')
        return 0;
    if (!digits(s.p, 4, &year) || !digits(s.p + 4, 2, &month) || !digits(s.p + 6, 2, &day) ||
        !digits(s.p + 9, 2, &hour) || !digits(s.p + 11, 2, &minute) ||
        !digits(s.p + 13, 2, &second))
        return 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int last = month_days[month - 1] + (month == 2 && leap);
    if (day > last)
        return 0;
    long long days = days_from_civil(year, (unsigned)month, (unsigned)day);
    *epoch = (double)(days * 86400LL + hour * 3600LL + minute * 60LL + second);
    return 1;
}

/* A path whose canonical form (botocore's normalize_url_path, then quote(safe="/~")) is itself:
 * rooted, only unreserved characters and slashes, no empty, "." or ".." segment. */
static int
canonical_path_is_itself(span path)
{
    if (path.n < 1 || path.p[0] != '/')
        return 0;
    Py_ssize_t segment_start = 1;
    for (Py_ssize_t i = 1; i <= path.n; i++) {
        if (i == path.n || path.p[i] == '/') {
            Py_ssize_t len = i - segment_start;
            const char *seg = path.p + segment_start;
            if (len == 0 && i != path.n)
                return 0; /* "//" */
            if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            segment_start = i + 1;
            continue;
        }
        char c = path.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '~'))
            return 0;
    }
    return 1;
}

/* A header value as SigV4 canonicalises it: trimmed, inner runs of spaces made one. */
static char *
append_value(char *out, span v)
{
    Py_ssize_t i = 0, end = v.n;
    while (i < end && v.p[i] == ' ')
        i++;
    while (end > i && v.p[end - 1] == ' ')
        end--;
    int in_space = 0;
    for (; i < end; i++) {
        char c = v.p[i];
        if (c == ' ') {
            if (!in_space)
                *out++ = ' ';
            in_space = 1;
        }
        else {
            *out++ = c;
            in_space = 0;
        }
    }
    return out;
}

/* SHA-256 through the low-level interface: OpenSSL 3's one-shot SHA256() fetches the algorithm
 * by name on every call, which costs more than hashing a canonical request. */
static void
sha256(const void *data, size_t n, unsigned char *digest)
{
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, n);
    SHA256_Final(digest, &ctx);
}

static int
bytes_span(PyObject *object, span *out)
{
    if (!PyBytes_CheckExact(object))
        return 0;
    out->p = PyBytes_AS_STRING(object);
    out->n = PyBytes_GET_SIZE(object);
    return 1;
}

/* HMAC-SHA256 (RFC 2104) with the key's padded blocks already hashed: `states` holds the
 * SHA-256 state after (key ^ ipad), then the state after (key ^ opad); see signing_states. */
static void
hmac_sha256_hex(span states, const char *const *parts, const Py_ssize_t *lengths, int count,
                char *hex_out)
{
    unsigned char inner_digest[32], digest[32];
    SHA256_CTX ctx;
    memcpy(&ctx, states.p, sizeof ctx);
    for (int i = 0; i < count; i++)
        SHA256_Update(&ctx, parts[i], (size_t)lengths[i]);
    SHA256_Final(inner_digest, &ctx);
    memcpy(&ctx, states.p + sizeof ctx, sizeof ctx);
    SHA256_Update(&ctx, inner_digest, 32);
    SHA256_Final(digest, &ctx);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    to_hex(digest, hex_out);
}

PyDoc_STRVAR(signing_states_doc,
"signing_states(key)\n"
"--\n\n"
"The SHA-256 states after hashing the key's HMAC padded blocks (inner, then outer), as the\n"
"memo entry holds them: each signature then costs two fewer blocks to hash.");

static PyObject *
signing_states(PyObject *module, PyObject *key_object)
{
    (void)module;
    span key;
    if (!bytes_span(key_object, &key) || key.n > 64) {
        PyErr_SetString(PyExc_TypeError, "the key is at most 64 bytes");
        return NULL;
    }
    unsigned char block[64];
    SHA256_CTX states[2];
    for (int which = 0; which < 2; which++) {
        memset(block, 0, sizeof block);
        memcpy(block, key.p, (size_t)key.n);
        for (int i = 0; i < 64; i++)
            block[i] ^= which == 0 ? 0x36 : 0x5c;
        SHA256_Init(&states[which]);
        SHA256_Update(&states[which], block, 64);
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)states, sizeof states);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(states, sizeof states);
    return out;
}

/* The last memo entry found, for the dict it was found in: a server's clients mostly share one
 * head, so this spares making and hashing a bytes object per request. Strong references: the
 * dict cannot be freed and another take its address. An entry stays right for its verifier
 * whether or not the dict still holds it (it depends on the head only). */
static PyObject *last_heads = NULL, *last_head = NULL, *last_entry = NULL;

static PyObject *
find_entry(PyObject *heads, const char *head, Py_ssize_t length)
{
    if (heads == last_heads && PyBytes_GET_SIZE(last_head) == length &&
        memcmp(PyBytes_AS_STRING(last_head), head, (size_t)length) == 0)
        return last_entry;
    PyObject *key = PyBytes_FromStringAndSize(head, length);
    if (key == NULL)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(heads, key); /* borrowed */
    if (entry == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_INCREF(heads);
    Py_INCREF(entry);
    Py_XSETREF(last_heads, heads);
    Py_XSETREF(last_head, key);
    Py_XSETREF(last_entry, entry);
    return entry;
}

PyDoc_STRVAR(verify_doc,
"verify(heads, services, now, max_skew, method, headers, path, query, body, body_sha256=None)\n"
"--\n\n"
"The memoised result for this request when it verifies in the plain form; None otherwise\n"
"(the caller then verifies it in full). Never refuses. `now` None reads the system clock.\n"
"The arguments that stay the same for a route come first, so functools.partial can bind\n"
"them once.");

static PyObject *
fast_verify(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9 && nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "verify() takes 9 or 10 arguments");
        return NULL;
    }
    PyObject *heads = args[0], *services = args[1], *method = args[4], *headers = args[5];
    PyObject *path = args[6], *query = args[7], *body = args[8];
    PyObject *body_sha256 = nargs == 10 ? args[9] : Py_None;
    double now;
    if (args[2] == Py_None) {
        struct timespec clock;
        clock_gettime(CLOCK_REALTIME, &clock);
        now = (double)clock.tv_sec + (double)clock.tv_nsec * 1e-9;
    }
    else {
        now = PyFloat_AsDouble(args[2]);
        if (now == -1.0 && PyErr_Occurred())
            return NULL;
    }
    double max_skew = PyFloat_AsDouble(args[3]);
    if (max_skew == -1.0 && PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(heads) || !PyAnySet_Check(services)) {
        PyErr_SetString(PyExc_TypeError, "heads must be a dict and services a set");
        return NULL;
    }

    PyObject **items;
    Py_ssize_t count;
    if (PyList_CheckExact(headers)) {
        items = PySequence_Fast_ITEMS(headers);
        count = PyList_GET_SIZE(headers);
    }
    else if (PyTuple_CheckExact(headers)) {
        items = PySequence_Fast_ITEMS(headers);
        count = PyTuple_GET_SIZE(headers);
    }
    else
        Py_RETURN_NONE;
    if (count > MAX_HEADERS)
        Py_RETURN_NONE;

    /* The headers, and the ones the checks look at (index and count of each). */
    span names[MAX_HEADERS], values[MAX_HEADERS];
    Py_ssize_t auth_at = -1, date_at = -1, sha_at = -1, token_at = -1;
    int auth_n = 0, date_n = 0, sha_n = 0, token_n = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = items[i];
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 ||
            !bytes_span(PyTuple_GET_ITEM(item, 0), &names[i]) ||
            !bytes_span(PyTuple_GET_ITEM(item, 1), &values[i]))
            Py_RETURN_NONE;
        span name = names[i];
        for (Py_ssize_t k = 0; k < name.n; k++)
            if (name.p[k] >= 'A' && name.p[k] <= 'Z')
                Py_RETURN_NONE; /* names arrive lowercased from polyhost's and ASGI servers */
        if (equals(name, "authorization", 13)) {
            auth_n++;
            auth_at = i;
        }
        else if (equals(name, "x-amz-date", 10)) {
            date_n++;
            date_at = i;
        }
        else if (equals(name, "x-amz-content-sha256", 20)) {
            sha_n++;
            sha_at = i;
        }
        else if (equals(name, "x-amz-security-token", 20)) {
            token_n++;
            token_at = i;
        }
    }
    if (auth_n != 1 || date_n != 1 || sha_n > 1 || token_n > 1)
        Py_RETURN_NONE;

    /* Authorization: <memoised head>, Signature=<64 lowercase hex digits> */
    span authorization = values[auth_at];
    Py_ssize_t comma = authorization.n - 1;
    while (comma >= 0 && authorization.p[comma] != ',')
        comma--;
    if (comma < 0)
        Py_RETURN_NONE;
    span tail = {authorization.p + comma + 1, authorization.n - comma - 1};
    while (tail.n > 0 && tail.p[0] == ' ') {
        tail.p++;
        tail.n--;
    }
    if (!starts_with(tail, "Signature=", 10) || tail.n != 10 + HEX_LEN ||
        !is_lower_hex(tail.p + 10, HEX_LEN))
        Py_RETURN_NONE;
    const char *signature = tail.p + 10;

    PyObject *entry = find_entry(heads, authorization.p, comma); /* borrowed */
    if (entry == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 8) {
        PyErr_SetString(PyExc_TypeError, "a memo entry is an 8-tuple");
        return NULL;
    }
    PyObject *signed_names = PyTuple_GET_ITEM(entry, 0);
    span joined, scope_date, scope, key, token = {NULL, 0};
    PyObject *token_object = PyTuple_GET_ITEM(entry, 5);
    PyObject *service = PyTuple_GET_ITEM(entry, 6);
    PyObject *result = PyTuple_GET_ITEM(entry, 7);
    if (!PyTuple_CheckExact(signed_names) || !bytes_span(PyTuple_GET_ITEM(entry, 1), &joined) ||
        !bytes_span(PyTuple_GET_ITEM(entry, 2), &scope_date) || scope_date.n != 8 ||
        !bytes_span(PyTuple_GET_ITEM(entry, 3), &scope) ||
        !bytes_span(PyTuple_GET_ITEM(entry, 4), &key) || key.n != 2 * (Py_ssize_t)sizeof(SHA256_CTX) ||
        (token_object != Py_None && !bytes_span(token_object, &token))) {
        PyErr_SetString(PyExc_TypeError, "a memo entry holds the wrong types");
        return NULL;
    }
    Py_ssize_t signed_count = PyTuple_GET_SIZE(signed_names);
    if (signed_count > MAX_SIGNED)
        Py_RETURN_NONE;

    /* The route accepts the signing service. */
    int accepted = PySet_Contains(services, service);
    if (accepted < 0)
        return NULL;
    if (!accepted)
        Py_RETURN_NONE;

    /* X-Amz-Date: well formed, the scope's day, within the allowed skew of now. */
    span amz_date = values[date_at];
    double moment;
    if (!parse_amz_date(amz_date, &moment) || memcmp(amz_date.p, scope_date.p, 8) != 0)
        Py_RETURN_NONE;
    if (moment < now - max_skew || moment > now + max_skew)
        Py_RETURN_NONE;

    /* The session token: absent exactly when the principal has none, else equal. */
    if (token_object == Py_None) {
        if (token_n)
            Py_RETURN_NONE;
    }
    else {
        if (token_n != 1)
            Py_RETURN_NONE;
        span sent = values[token_at];
        for (Py_ssize_t k = 0; k < sent.n; k++)
            if ((unsigned char)sent.p[k] >= 0x80)
                Py_RETURN_NONE;
        if (sent.n != token.n || CRYPTO_memcmp(sent.p, token.p, (size_t)sent.n) != 0)
            Py_RETURN_NONE;
    }

    /* The payload's hash: the body's, or the one the caller computed while reading it. */
    char payload_hex[HEX_LEN];
    if (body != Py_None) {
        span data;
        if (!bytes_span(body, &data) || data.n > MAX_INLINE_BODY)
            Py_RETURN_NONE;
        unsigned char digest[32];
        sha256(data.p, (size_t)data.n, digest);
        to_hex(digest, payload_hex);
    }
    else {
        if (!PyUnicode_Check(body_sha256) || !PyUnicode_IS_ASCII(body_sha256) ||
            PyUnicode_GET_LENGTH(body_sha256) != HEX_LEN)
            Py_RETURN_NONE;
        const char *given = (const char *)PyUnicode_DATA(body_sha256);
        for (int k = 0; k < HEX_LEN; k++) {
            char c = given[k];
            payload_hex[k] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
        }
        if (!is_lower_hex(payload_hex, HEX_LEN))
            Py_RETURN_NONE;
    }
    if (sha_n) {
        span sent = values[sha_at];
        if (sent.n != HEX_LEN)
            Py_RETURN_NONE;
        for (int k = 0; k < HEX_LEN; k++) {
            char c = sent.p[k];
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            if (c != payload_hex[k])
                Py_RETURN_NONE;
        }
    }

    /* Every x-amz-* and x-amzn-sagemaker-* header is signed (but the session token). */
    span signed_spans[MAX_SIGNED];
    for (Py_ssize_t j = 0; j < signed_count; j++)
        if (!bytes_span(PyTuple_GET_ITEM(signed_names, j), &signed_spans[j])) {
            PyErr_SetString(PyExc_TypeError, "signed names are bytes");
            return NULL;
        }
    for (Py_ssize_t i = 0; i < count; i++) {
        span name = names[i];
        if (!(starts_with(name, "x-amz-", 6) || starts_with(name, "x-amzn-sagemaker-", 17)) ||
            i == token_at)
            continue;
        int found = 0;
        for (Py_ssize_t j = 0; j < signed_count && !found; j++)
            found = name.n == signed_spans[j].n &&
                    memcmp(name.p, signed_spans[j].p, (size_t)name.n) == 0;
        if (!found)
            Py_RETURN_NONE;
    }

    /* Each signed header present exactly once, its value in the plain form. */
    Py_ssize_t signed_at[MAX_SIGNED];
    Py_ssize_t length = 0;
    for (Py_ssize_t j = 0; j < signed_count; j++) {
        signed_at[j] = -1;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (names[i].n == signed_spans[j].n &&
                memcmp(names[i].p, signed_spans[j].p, (size_t)names[i].n) == 0) {
                if (signed_at[j] >= 0)
                    Py_RETURN_NONE; /* repeated: joined with commas by the Python verifier */
                signed_at[j] = i;
            }
        }
        if (signed_at[j] < 0)
            Py_RETURN_NONE;
        span value = values[signed_at[j]];
        for (Py_ssize_t k = 0; k < value.n; k++)
            if (needs_python((unsigned char)value.p[k]))
                Py_RETURN_NONE;
        length += signed_spans[j].n + 1 + value.n + 1;
    }

    /* Method, path and query in the plain form. */
    span path_span;
    if (!bytes_span(path, &path_span) || !canonical_path_is_itself(path_span))
        Py_RETURN_NONE;
    if (PyBytes_Check(query) ? PyBytes_GET_SIZE(query) != 0
                             : !PyUnicode_Check(query) || PyUnicode_GET_LENGTH(query) != 0)
        Py_RETURN_NONE;
    if (!PyUnicode_Check(method) || !PyUnicode_IS_ASCII(method) ||
        PyUnicode_GET_LENGTH(method) > 16)
        Py_RETURN_NONE;
    Py_ssize_t method_n = PyUnicode_GET_LENGTH(method);
    const char *method_p = (const char *)PyUnicode_DATA(method);

    length += method_n + 1 + path_span.n + 1 + 1 + 1 + joined.n + 1 + HEX_LEN;
    if (length > MAX_CANONICAL)
        Py_RETURN_NONE;

    /* The canonical request, and its hash. */
    char stack_buffer[STACK_CANONICAL];
    char *buffer = stack_buffer;
    if (length > STACK_CANONICAL) {
        buffer = PyMem_Malloc((size_t)length);
        if (buffer == NULL)
            return PyErr_NoMemory();
    }
    char *out = buffer;
    for (Py_ssize_t k = 0; k < method_n; k++) {
        char c = method_p[k];
        *out++ = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    }
    *out++ = '\n';
    memcpy(out, path_span.p, (size_t)path_span.n);
    out += path_span.n;
    *out++ = '\n';
    *out++ = '\n'; /* the query, empty */
    for (Py_ssize_t j = 0; j < signed_count; j++) {
        memcpy(out, signed_spans[j].p, (size_t)signed_spans[j].n);
        out += signed_spans[j].n;
        *out++ = ':';
        out = append_value(out, values[signed_at[j]]);
        *out++ = '\n';
    }
    *out++ = '\n';
    memcpy(out, joined.p, (size_t)joined.n);
    out += joined.n;
    *out++ = '\n';
    memcpy(out, payload_hex, HEX_LEN);
    out += HEX_LEN;
    unsigned char canonical_digest[32];
    sha256(buffer, (size_t)(out - buffer), canonical_digest);
    if (buffer != stack_buffer)
        PyMem_Free(buffer);
    char canonical_hex[HEX_LEN];
    to_hex(canonical_digest, canonical_hex);

    /* The string to sign, signed with the derived key; compared in constant time. */
    static const char algorithm[] = "AWS4-HMAC-SHA256\n";
    const char *parts[] = {algorithm, amz_date.p, "\n", scope.p, "\n", canonical_hex};
    const Py_ssize_t lengths[] = {
        (Py_ssize_t)sizeof algorithm - 1, AMZ_DATE_LEN, 1, scope.n, 1, HEX_LEN};
    char expected[HEX_LEN];
    hmac_sha256_hex(key, parts, lengths, 6, expected);
    if (CRYPTO_memcmp(expected, signature, HEX_LEN) != 0)
        Py_RETURN_NONE;
    Py_INCREF(result);
    return result;
}

static PyMethodDef methods[] = {
    {"verify", (PyCFunction)(void (*)(void))fast_verify, METH_FASTCALL, verify_doc},
    {"signing_states", signing_states, METH_O, signing_states_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "polyhost.auth._sigv4_fast",
    "The accepting half of SigV4 verification, compiled (see polyhost.auth.sigv4).",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__sigv4_fast(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "MAX_INLINE_BODY", MAX_INLINE_BODY) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
