"""The `tfs-*` custom attributes SageMaker's TensorFlow container reads from a request.

`X-Amzn-SageMaker-Custom-Attributes: tfs-model-name=mnist,tfs-model-version=2,tfs-method=predict`
picks the model, its version and the TensorFlow Serving method. Other attributes in the header
are the caller's business and are ignored, exactly as SageMaker's front end does (it extracts
`tfs-<name>=<value>` pairs with a regular expression).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PAIR = re.compile(r"tfs-[a-z\-]+=[^,]+")
METHODS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class TfsAttributes:
    model_name: str | None = None
    model_version: str | None = None
    method: str | None = None  # None: the request did not say (TensorFlow Serving: predict)

    @property
    def effective_method(self) -> str:
        return self.method or "predict"


def parse_attributes(header: str | None) -> TfsAttributes:
    """The `tfs-*` pairs of a custom-attributes header; absent ones are None."""
    if not header:
        return TfsAttributes()
    pairs: dict[str, str] = {}
    for match in _PAIR.findall(header):
        key, sep, value = match.partition("=")
        if sep and "=" not in value and value.strip():
            pairs[key] = value.strip()
    return TfsAttributes(
        model_name=pairs.get("tfs-model-name"),
        model_version=pairs.get("tfs-model-version"),
        method=pairs.get("tfs-method"),
    )
