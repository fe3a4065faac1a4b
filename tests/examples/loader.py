"""Import an example's modules the way its scripts do: with the example's folder on sys.path.

The examples are folders of scripts, not packages (their names have hyphens), and their modules
import each other by plain name (`import data`). Each example's module names are distinct from
the other's, so both folders can be on the path in one test session.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_module(example: str, name: str) -> ModuleType:
    """`examples/<example>/<name>.py`, imported as the example's scripts import it."""
    folder = str(EXAMPLES / example)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)
