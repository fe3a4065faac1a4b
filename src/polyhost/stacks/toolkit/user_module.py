"""Find and import the user's inference script, the way SageMaker's framework containers do.

The script is `SAGEMAKER_PROGRAM` (default `inference.py`). It is looked for in
`SAGEMAKER_SUBMIT_DIRECTORY` when that is set (a folder, a `.tar.gz`, a `file://` or `s3://`
URL; S3 is fetched with boto3, which honours `AWS_ENDPOINT_URL_S3`), then in `code/` of the
model dir, then at the model dir's root. A model.tar.gz packed by the SageMaker Python SDK keeps
its script in `code/` and sets `SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code`; because a
polyhost container may see its model elsewhere, a path under `/opt/ml/model` that does not exist
here is read relative to the actual model dir.

The script's folder goes first on `sys.path` so the script can import its helper modules.
`requirements.txt` next to it is installed only when `POLYHOST_INSTALL_REQUIREMENTS=1`: a
container must not assume network access, so by default it only says that it skipped it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlparse

from polyhost.stacks.toolkit.environment import (
    DEFAULT_PROGRAM,
    SAGEMAKER_MODEL_DIR,
    flag,
)

log = logging.getLogger("polyhost.stack.user_module")


class UserModuleError(Exception):
    """The user script cannot be found, fetched or imported; the message says what to fix."""


def load_user_module(
    model_dir: Path, environ: Mapping[str, str] | None = None
) -> ModuleType | None:
    """Import the user script and return it, or None when there is none (defaults apply).

    An explicitly named `SAGEMAKER_PROGRAM` that cannot be found is an error: serving with the
    default handlers would silently answer something other than what the user wrote.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("SAGEMAKER_PROGRAM", "").strip()
    program = explicit or DEFAULT_PROGRAM
    searched: list[Path] = []
    for folder in _candidate_folders(model_dir, env):
        script = _script_in(folder, program)
        searched.append(folder)
        if script is not None:
            _maybe_install_requirements(folder, env)
            return _import_script(script)
    if explicit:
        where = ", ".join(str(folder) for folder in searched) or str(model_dir)
        raise UserModuleError(
            f"SAGEMAKER_PROGRAM {explicit!r} was not found (looked in {where}); put it in the "
            "model archive's code/ folder or point SAGEMAKER_SUBMIT_DIRECTORY at it"
        )
    return None


def _candidate_folders(model_dir: Path, env: Mapping[str, str]) -> list[Path]:
    folders: list[Path] = []
    submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "").strip()
    if submit:
        folders.append(fetch_submit_directory(submit, model_dir, env))
    folders += [model_dir / "code", model_dir]
    unique: list[Path] = []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in {f.resolve() for f in unique}:
            unique.append(folder)
    return unique


def _script_in(folder: Path, program: str) -> Path | None:
    names = [program] if program.endswith(".py") else [program, program + ".py"]
    for name in names:
        candidate = (folder / name).resolve()
        # The program names a file inside the folder, never somewhere outside it.
        if candidate.is_file() and candidate.is_relative_to(folder.resolve()):
            return candidate
    return None


def fetch_submit_directory(
    submit: str, model_dir: Path, environ: Mapping[str, str] | None = None
) -> Path:
    """Turn SAGEMAKER_SUBMIT_DIRECTORY into a local folder (downloading/extracting if needed)."""
    env = os.environ if environ is None else environ
    parsed = urlparse(submit)
    if parsed.scheme == "s3":
        return _fetch_s3(parsed.netloc, parsed.path.lstrip("/"), env)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "":
        path = Path(submit)
    else:
        raise UserModuleError(
            f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r}: unsupported scheme {parsed.scheme!r}; use "
            "a folder, a .tar.gz, a file:// or an s3:// URL"
        )
    path = _relocate(path, model_dir)
    if path.is_dir():
        return path
    if path.is_file() and _is_tarball(path.name):
        return _extract(path)
    raise UserModuleError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} does not exist")


def _relocate(path: Path, model_dir: Path) -> Path:
    """Map SageMaker's in-container model path onto where this container's model really is."""
    if path.exists():
        return path
    try:
        relative = path.relative_to(SAGEMAKER_MODEL_DIR)
    except ValueError:
        return path
    return model_dir / relative


def _is_tarball(name: str) -> bool:
    return name.endswith((".tar.gz", ".tgz", ".tar"))


def _extract(archive: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="polyhost-code-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, .., odd links
    except (tarfile.TarError, OSError) as error:
        raise UserModuleError(f"cannot extract source archive {archive}: {error}") from None
    return target


def _fetch_s3(bucket: str, key: str, env: Mapping[str, str]) -> Path:
    import boto3  # lazily: only scripts kept in S3 need it

    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    client = boto3.client("s3", endpoint_url=endpoint)
    url = f"s3://{bucket}/{key}"
    try:
        if _is_tarball(key):
            folder = Path(tempfile.mkdtemp(prefix="polyhost-src-"))
            archive = folder / Path(key).name
            client.download_file(bucket, key, str(archive))
            return _extract(archive)
        # A prefix: download every object under it, keeping the layout.
        target = Path(tempfile.mkdtemp(prefix="polyhost-code-"))
        prefix = key.rstrip("/") + "/" if key else ""
        found = False
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                destination = (target / relative).resolve()
                if not relative or relative.endswith("/"):
                    continue
                if not destination.is_relative_to(target.resolve()):
                    raise UserModuleError(f"{url}: object key {item['Key']!r} escapes the folder")
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(destination))
                found = True
        if not found:
            raise UserModuleError(f"SAGEMAKER_SUBMIT_DIRECTORY {url}: no objects found")
        return target
    except UserModuleError:
        raise
    except Exception as error:  # botocore's errors: say which URL and why, no traceback
        raise UserModuleError(f"cannot fetch SAGEMAKER_SUBMIT_DIRECTORY {url}: {error}") from None


def _maybe_install_requirements(folder: Path, env: Mapping[str, str]) -> None:
    requirements = folder / "requirements.txt"
    if not requirements.is_file():
        return
    if not flag("POLYHOST_INSTALL_REQUIREMENTS", env):
        log.warning(
            "%s is not installed (set POLYHOST_INSTALL_REQUIREMENTS=1 to pip-install it; the "
            "packages must otherwise already be in this stack's environment)",
            requirements,
        )
        return
    log.info("installing %s", requirements)
    command = [sys.executable, "-m", "pip", "install", "--no-input", "-r", str(requirements)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserModuleError(f"pip install -r {requirements} failed:\n{result.stderr[-2000:]}")


def _import_script(script: Path) -> ModuleType:
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = script.stem
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise UserModuleError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise UserModuleError(
            f"importing {script.name} failed: {type(error).__name__}: {error}"
        ) from error
    log.info("user script %s imported", script)
    return module


def handler(module: ModuleType | None, name: str) -> Callable[..., Any] | None:
    """The module's handler `name` when it defines a callable of that name, else None."""
    if module is None:
        return None
    function = getattr(module, name, None)
    return function if callable(function) else None


def _positional_capacity(function: Callable[..., Any]) -> int:
    """How many positional arguments `function` accepts (a large number for *args)."""
    try:
        return _cached_capacity(function)
    except TypeError:  # an unhashable callable: inspect it every time
        return _capacity(function)


def _capacity(function: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return -1
    count = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return sys.maxsize
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


_cached_capacity = lru_cache(maxsize=64)(_capacity)


def call_handler(function: Callable[..., Any], *args: Any, context: Any = None) -> Any:
    """Call a user handler, adding `context` when its signature has room for one more argument.

    SageMaker's toolkit decides the same way (by the number of parameters), so
    `input_fn(body, content_type)` and `input_fn(body, content_type, context)` both work.
    """
    capacity = _positional_capacity(function)
    if capacity > len(args):
        return function(*args, context)
    return function(*args)
