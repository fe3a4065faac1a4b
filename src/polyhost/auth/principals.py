"""The principals file: who may sign requests, with which keys, under which IAM policies.

```json
{"principals": [{"name": "alice", "access_key_id": "AKIA...", "secret_access_key": "...",
                 "session_token": "optional", "policies": [{"Version": "2012-10-17", ...}]}]}
```

Everything is validated when the file is read, and a file with any error is refused as a whole
(a reload that fails keeps the previous principals). Each message names the principal and, for
a policy, the policy and statement (index and Sid). Secrets never reach a message or a repr:
`Principal`'s repr masks them, and every message is scrubbed of every secret in the file, in
case one was pasted into the wrong field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from polyhost.auth.context import KNOWN_KEYS
from polyhost.auth.errors import PolicyError
from polyhost.auth.policy import PolicySet, compile_policies, json_object, parse_policy

MAX_FILE_BYTES = 1024 * 1024
MAX_PRINCIPALS = 1000
MAX_POLICIES_PER_PRINCIPAL = 20

# IAM's user-name alphabet; the name is also `aws:username` in policies.
NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{16,128}")
SECRET = re.compile(r"[\x21-\x7e]{16,128}")
SESSION_TOKEN = re.compile(r"[\x21-\x7e]{16,8192}")
_ENTRY_FIELDS = ("name", "access_key_id", "secret_access_key", "session_token", "policies")
MASK = "***"


@dataclass(frozen=True, eq=False, slots=True)
class Principal:
    """One principal. Compared and hashed by identity: a reload makes new ones, so a decision
    cached for an old principal can never answer for its successor."""

    name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(repr=False)
    policies: PolicySet = field(repr=False)

    @property
    def cacheable(self) -> bool:
        """Whether decisions for this principal may be cached: not if a policy reads the time."""
        return not self.policies.reads_time

    def __repr__(self) -> str:
        token = MASK if self.session_token else None
        count = len(self.policies.denies) + len(self.policies.allows)
        return (
            f"Principal(name={self.name!r}, access_key_id={self.access_key_id!r}, "
            f"secret_access_key={MASK!r}, session_token={token!r}, statements={count})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    principals: tuple[Principal, ...]
    by_access_key: Mapping[str, Principal] = field(repr=False)
    by_name: Mapping[str, Principal] = field(repr=False)

    def lookup(self, access_key_id: str) -> Principal | None:
        """The principal owning `access_key_id` (what the SigV4 verifier asks)."""
        return self.by_access_key.get(access_key_id)


def load_principals(path: Path, *, known_keys: Mapping[str, str] = KNOWN_KEYS) -> PrincipalSet:
    """Read and validate a principals file; raises PolicyError (or OSError if unreadable)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PolicyError(f"principals file {path} is larger than {MAX_FILE_BYTES} bytes")
    return parse_principals(data, known_keys=known_keys)


def parse_principals(
    data: bytes | str, *, known_keys: Mapping[str, str] = KNOWN_KEYS
) -> PrincipalSet:
    """Validate the text of a principals file."""
    if len(data) > MAX_FILE_BYTES:
        raise PolicyError(f"the principals file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise PolicyError("the principals file is not UTF-8 text") from None
    try:
        document = json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as error:
        raise PolicyError(
            f"the principals file is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from None
    except RecursionError:
        raise PolicyError("the principals file is nested too deeply") from None
    secrets = _secrets_in(document)
    try:
        return _principal_set(document, known_keys)
    except PolicyError as error:
        raise PolicyError(_scrub(str(error), secrets)) from None


def _principal_set(document: object, known_keys: Mapping[str, str]) -> PrincipalSet:
    if not isinstance(document, dict) or set(document) != {"principals"}:
        raise PolicyError('the principals file must be an object with one member, "principals"')
    if getattr(document, "duplicates", ()):
        raise PolicyError('the principals file has "principals" more than once')
    entries = document["principals"]
    if not isinstance(entries, list):
        raise PolicyError('"principals" must be a list')
    if len(entries) > MAX_PRINCIPALS:
        raise PolicyError(f"the principals file lists more than {MAX_PRINCIPALS} principals")
    principals: list[Principal] = []
    by_key: dict[str, Principal] = {}
    by_name: dict[str, Principal] = {}
    for index, entry in enumerate(entries):
        principal = _principal(entry, index, known_keys)
        folded = principal.name.lower()
        if folded in by_name:
            raise PolicyError(
                f'principal {index}: the name "{principal.name}" is already used by another '
                "principal (names are unique, ignoring case)"
            )
        if principal.access_key_id in by_key:
            other = by_key[principal.access_key_id].name
            raise PolicyError(
                f'principal "{principal.name}": access_key_id {principal.access_key_id} is '
                f'already the key of principal "{other}"'
            )
        by_name[folded] = principal
        by_key[principal.access_key_id] = principal
        principals.append(principal)
    return PrincipalSet(tuple(principals), by_key, {p.name: p for p in principals})


def _principal(entry: object, index: int, known_keys: Mapping[str, str]) -> Principal:
    here = f"principal {index}"
    if not isinstance(entry, dict):
        raise PolicyError(f"{here}: a principal must be a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PolicyError(
            f"{here}: name must be 1-64 characters of letters, digits and +=,.@_- "
            "(it is aws:username in policies)"
        )
    here = f'principal "{name}"'
    duplicates: tuple[str, ...] = getattr(entry, "duplicates", ())
    if duplicates:
        raise PolicyError(f"{here}: has {duplicates[0]!r} more than once")
    for key in entry:
        if key not in _ENTRY_FIELDS:
            raise PolicyError(
                f"{here}: unknown member {key!r}; allowed: {', '.join(_ENTRY_FIELDS)}"
            )
    access_key_id = entry.get("access_key_id")
    if not isinstance(access_key_id, str) or not ACCESS_KEY_ID.fullmatch(access_key_id):
        raise PolicyError(f"{here}: access_key_id must be 16-128 letters and digits")
    secret = entry.get("secret_access_key")
    if not isinstance(secret, str) or not SECRET.fullmatch(secret):
        raise PolicyError(
            f"{here}: secret_access_key must be 16-128 printable ASCII characters without spaces "
            "(`polyhost` can generate a key pair)"
        )
    token = entry.get("session_token")
    if token is not None and not (isinstance(token, str) and SESSION_TOKEN.fullmatch(token)):
        raise PolicyError(
            f"{here}: session_token, when given, must be 16-8192 printable ASCII characters "
            "without spaces"
        )
    documents = entry.get("policies", [])
    if not isinstance(documents, list):
        raise PolicyError(f"{here}: policies must be a list of IAM policy documents")
    if len(documents) > MAX_POLICIES_PER_PRINCIPAL:
        raise PolicyError(f"{here}: more than {MAX_POLICIES_PER_PRINCIPAL} policies")
    compiled = [
        parse_policy(document, policy_index=i, where=here, known_keys=known_keys)
        for i, document in enumerate(documents)
    ]
    return Principal(name, access_key_id, secret, token, compile_policies(compiled))


def _secrets_in(document: object) -> list[str]:
    """Every secret and token string in the file, longest first, for scrubbing messages."""
    found: list[str] = []
    entries = document.get("principals") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            for key in ("secret_access_key", "session_token"):
                value = entry.get(key)
                if isinstance(value, str) and value:
                    found.append(value)
    return sorted(found, key=len, reverse=True)


def _scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, MASK)
    return message
