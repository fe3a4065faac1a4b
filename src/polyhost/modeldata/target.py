"""A multi-model endpoint's TargetModel: a path below the container's prefix, never above it.

InvokeEndpoint's `TargetModel` names an archive relative to the `ModelDataUrl` prefix of a
`Mode: MultiModel` container (`s3://bucket/models/` + `team-a/churn.tar.gz`). Whoever may invoke
the endpoint chooses it, so it is checked before anything is fetched, and refused when it could
name anything but an object below the prefix:

- 1 to 1024 characters (SageMaker's limit), no control characters (C0, DEL, C1);
- no absolute path (`/x`, `\\x`, `C:x`), no `.` or `..` segment, no empty segment (`a//b`), no
  backslash (a separator to some servers);
- no URL (`scheme:...`), no `?` or `#` (they would end the path of an https:// or file:// URL);
- no percent-encoded escape of any of these (`%2e%2e`, `%2F`, `%00`, `%25` and so double
  encodings), since file:// and https:// URLs are percent-decoded on the way.

The URL is then the prefix and the target joined: as it is for s3:// (an object key is taken
literally), percent-encoded for file:// and https:// (whose paths are decoded again).
"""

from __future__ import annotations

import re
from urllib.parse import quote

MAX_TARGET_CHARS = 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# What no escape may stand for: controls, the separators, `.` (for `..`), `%` (double
# encoding), and what ends a URL's path.
_ESCAPED_REFUSED = frozenset({*range(0x20), *range(0x7F, 0xA0), ord("/"), ord("\\"), ord(".")})
_ESCAPED_REFUSED |= {ord("%"), ord("?"), ord("#")}
_SAFE_IN_URL = "/-._~!$&'()*+,;=:@"


class TargetModelRefused(ValueError):
    """TargetModel does not name a path below the prefix; the message says why."""


def target_refusal(target: str) -> str | None:
    """Why `target` is not a TargetModel polyhost fetches, or None when it is one."""
    if not target:
        return "it is empty"
    if len(target) > MAX_TARGET_CHARS:
        return f"it is longer than {MAX_TARGET_CHARS} characters"
    if _CONTROL.search(target):
        return "it holds a control character"
    for match in _ESCAPE.finditer(target):
        if int(match.group(1), 16) in _ESCAPED_REFUSED:
            return f"it holds the percent-encoded escape {match.group(0)}"
    if "\\" in target:
        return "it holds a backslash"
    if "?" in target or "#" in target:
        return "it holds '?' or '#'"
    if target.startswith("/"):
        return "it is an absolute path"
    if _SCHEME.match(target):
        return "it is a URL or names a drive, not a path below the prefix"
    for segment in target.split("/"):
        if segment in ("", ".", ".."):
            return "it has an empty, '.' or '..' path segment"
    return None


def check_target(target: str) -> str:
    """`target` itself, or TargetModelRefused."""
    reason = target_refusal(target)
    if reason is not None:
        raise TargetModelRefused(
            f"TargetModel must be a path below the endpoint's model prefix, like "
            f"team-a/model.tar.gz: {reason}."
        )
    return target


def target_url(prefix: str, target: str) -> str:
    """The URL of `target` below `prefix` (a ModelDataUrl prefix); TargetModelRefused first."""
    check_target(target)
    base = prefix if prefix.endswith("/") else prefix + "/"
    if base.startswith("s3://"):
        return base + target
    return base + quote(target, safe=_SAFE_IN_URL)
