"""Fresh key pairs for the principals file, shaped like AWS's so every client accepts them.

An access key id is `AKIA` and 16 characters of the base32 alphabet (as AWS's long-term keys
look); a secret is 40 characters of the base64 alphabet. Both come from `secrets`, the
operating system's cryptographic random source: 40 characters of 64 symbols are 240 bits.
"""

from __future__ import annotations

import secrets
import string

from polyhost.auth.principals import NAME

ACCESS_KEY_PREFIX = "AKIA"
ACCESS_KEY_ALPHABET = string.ascii_uppercase + "234567"
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
SECRET_LENGTH = 40


def new_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def new_principal(name: str, policies: list[object] | None = None) -> dict[str, object]:
    """A principals-file entry for `name` with a new key pair (and no policies unless given:
    a principal without policies is denied everything)."""
    if not NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid principal name: 1-64 letters, digits and +=,.@_-"
        )
    return {
        "name": name,
        "access_key_id": new_access_key_id(),
        "secret_access_key": new_secret_access_key(),
        "policies": list(policies or []),
    }
