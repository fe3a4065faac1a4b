"""The registry of the control plane's operations: `@operation(name)` on a handler.

Kept apart from `service.py` so the handlers of one kind of resource can live in a module of
their own (`components.py`) and still be listed once, where they are written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]
# Every operation the control plane implements: by `@operation` at its handler.
HANDLERS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register a control plane method as the handler of the SageMaker operation `name`."""

    def register(method: Handler) -> Handler:
        HANDLERS[name] = method
        return method

    return register
