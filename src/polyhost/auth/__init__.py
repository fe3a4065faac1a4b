"""Access control: who signed a request (SigV4) and whether their policies allow it (IAM).

Pure, framework-free modules; the HTTP adapters call them through `gate`. `docs/auth.md`
describes the principals file, the evaluation semantics and a worked example.

- `principals` loads and validates the principals file (keys and IAM policy documents).
- `sigv4` verifies an `Authorization: AWS4-HMAC-SHA256 ...` header against a principal's secret.
- `policy` + `conditions` + `patterns` evaluate IAM identity policies against a request.
- `context` builds the request context (the condition keys a request carries).
- `authorizer` decides, through `cache` (a bounded LRU); `guard` bundles principals, verifier
  and authorizer so a reload swaps them at once.
- `actions` maps wire operations to IAM actions and resource ARNs.
- `gate` is what the adapters call: `allow_invocation` once per invocation (the compiled
  path, the allowances already made), `authenticate` and `authorize` for every other route.
- `errors` holds the refusal types and the AWS error codes an adapter puts on the wire.
- `keys` mints new access key pairs.
"""
