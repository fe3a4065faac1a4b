"""Finding and importing the user script: model dir, code/, SAGEMAKER_SUBMIT_DIRECTORY."""

from __future__ import annotations

import io
import logging
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from polyhost.stacks.toolkit.user_module import (
    UserModuleError,
    call_handler,
    handler,
    load_user_module,
)
from tests.support.server import free_port


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    """Each test imports scripts; leave sys.path and sys.modules as they were."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("entry_", "helper_", "inference")):
            del sys.modules[name]


def _program() -> str:
    """A unique script name, so a test never sees another test's module."""
    return f"entry_{uuid.uuid4().hex[:8]}.py"


def _write_script(folder: Path, name: str, marker: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"helper_{marker}.py").write_text(f"VALUE = {marker!r}\n")
    script = folder / name
    script.write_text(
        f"import helper_{marker}\nMARKER = helper_{marker}.VALUE\n"
        "def model_fn(model_dir):\n    return model_dir\n"
    )
    return script


def _tarball(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        for path in folder.iterdir():
            tar.add(path, arcname=path.name)
    return target


def test_no_script_means_defaults(tmp_path: Path) -> None:
    assert load_user_module(tmp_path, {}) is None


def test_code_folder_wins_over_the_model_dir_root(tmp_path: Path) -> None:
    name = _program()
    _write_script(tmp_path, name, "root")
    _write_script(tmp_path / "code", name, "code")
    module = load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": name})
    assert module is not None and module.MARKER == "code"  # its helper imported from code/


def test_script_at_the_model_dir_root(tmp_path: Path) -> None:
    name = _program()
    _write_script(tmp_path, name, "root")
    module = load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": name.removesuffix(".py")})
    assert module is not None and module.MARKER == "root"


def test_default_program_is_inference_py(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("NAME = 'default'\n")
    module = load_user_module(tmp_path, {})
    assert module is not None and module.NAME == "default"


def test_explicit_program_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserModuleError, match=r"SAGEMAKER_PROGRAM 'serve\.py' was not found"):
        load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": "serve.py"})


def test_program_cannot_point_outside_its_folder(tmp_path: Path) -> None:
    _write_script(tmp_path, "outside.py", "out")
    (tmp_path / "model").mkdir()
    with pytest.raises(UserModuleError, match="not found"):
        load_user_module(tmp_path / "model", {"SAGEMAKER_PROGRAM": "../outside.py"})


def test_script_failing_at_import_names_the_error(tmp_path: Path) -> None:
    name = _program()
    (tmp_path / name).write_text("raise RuntimeError('bad setup')\n")
    with pytest.raises(UserModuleError, match="RuntimeError: bad setup"):
        load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": name})


def test_submit_directory_folder_and_file_url(tmp_path: Path) -> None:
    name = _program()
    _write_script(tmp_path / "src", name, "submitted")
    model = tmp_path / "model"
    model.mkdir()
    for value in (str(tmp_path / "src"), (tmp_path / "src").as_uri()):
        env = {"SAGEMAKER_PROGRAM": name, "SAGEMAKER_SUBMIT_DIRECTORY": value}
        module = load_user_module(model, env)
        assert module is not None and module.MARKER == "submitted"


def test_submit_directory_tarball(tmp_path: Path) -> None:
    name = _program()
    _write_script(tmp_path / "src", name, "tarred")
    archive = _tarball(tmp_path / "src", tmp_path / "sourcedir.tar.gz")
    env = {"SAGEMAKER_PROGRAM": name, "SAGEMAKER_SUBMIT_DIRECTORY": str(archive)}
    module = load_user_module(tmp_path, env)
    assert module is not None and module.MARKER == "tarred"


def test_sagemaker_model_path_is_read_relative_to_the_model_dir(tmp_path: Path) -> None:
    """The SDK repacks code into code/ and sets SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code."""
    name = _program()
    _write_script(tmp_path / "code", name, "repacked")
    env = {"SAGEMAKER_PROGRAM": name, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    module = load_user_module(tmp_path, env)
    assert module is not None and module.MARKER == "repacked"


def test_unsafe_tarball_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"print('escaped')\n"
        info = tarfile.TarInfo("../escaped.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UserModuleError, match="cannot extract"):
        load_user_module(tmp_path, {"SAGEMAKER_SUBMIT_DIRECTORY": str(archive)})


def test_missing_submit_directory_and_bad_scheme(tmp_path: Path) -> None:
    with pytest.raises(UserModuleError, match="does not exist"):
        load_user_module(tmp_path, {"SAGEMAKER_SUBMIT_DIRECTORY": str(tmp_path / "nope")})
    with pytest.raises(UserModuleError, match="unsupported scheme 'ftp'"):
        load_user_module(tmp_path, {"SAGEMAKER_SUBMIT_DIRECTORY": "ftp://host/code"})


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_submit_directory_in_s3_tarball_and_prefix(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = _s3(s3_endpoint)
    s3.create_bucket(Bucket="code")
    name = _program()
    _write_script(tmp_path / "src", name, "from_s3")
    archive = _tarball(tmp_path / "src", tmp_path / "sourcedir.tar.gz")
    s3.upload_file(str(archive), "code", "job/source/sourcedir.tar.gz")
    for path in (tmp_path / "src").iterdir():
        s3.upload_file(str(path), "code", f"job/tree/{path.name}")
    model = tmp_path / "model"
    model.mkdir()
    for url in ("s3://code/job/source/sourcedir.tar.gz", "s3://code/job/tree"):
        env = {
            "SAGEMAKER_PROGRAM": name,
            "SAGEMAKER_SUBMIT_DIRECTORY": url,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
        }
        sys.modules.pop(name.removesuffix(".py"), None)
        module = load_user_module(model, env)
        assert module is not None and module.MARKER == "from_s3"
    missing = {"SAGEMAKER_SUBMIT_DIRECTORY": "s3://code/nothing/here.tar.gz"}
    with pytest.raises(UserModuleError, match="cannot fetch SAGEMAKER_SUBMIT_DIRECTORY"):
        load_user_module(model, {**missing, "AWS_ENDPOINT_URL_S3": s3_endpoint})


def test_requirements_are_reported_not_installed_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = _program()
    _write_script(tmp_path / "code", name, "req")
    (tmp_path / "code" / "requirements.txt").write_text("some-package==1.0\n")
    with caplog.at_level(logging.WARNING, logger="polyhost.stack.user_module"):
        assert load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": name}) is not None
    assert "requirements.txt is not installed" in caplog.text
    assert "POLYHOST_INSTALL_REQUIREMENTS=1" in caplog.text


def test_handler_lookup(tmp_path: Path) -> None:
    name = _program()
    (tmp_path / name).write_text("def input_fn(body, content_type):\n    pass\npredict_fn = 3\n")
    module = load_user_module(tmp_path, {"SAGEMAKER_PROGRAM": name})
    assert handler(module, "input_fn") is not None
    assert handler(module, "predict_fn") is None  # not callable
    assert handler(module, "output_fn") is None
    assert handler(None, "input_fn") is None


def test_call_handler_adds_context_only_when_there_is_room() -> None:
    def without(body: str, content_type: str) -> tuple[str, ...]:
        return (body, content_type)

    def with_context(body: str, content_type: str, context: str) -> tuple[str, ...]:
        return (body, content_type, context)

    def variadic(*args: str) -> tuple[str, ...]:
        return args

    class Callable:
        def __call__(self, body: str, content_type: str, context: str = "none") -> str:
            return context

    assert call_handler(without, "b", "t", context="ctx") == ("b", "t")
    assert call_handler(with_context, "b", "t", context="ctx") == ("b", "t", "ctx")
    assert call_handler(variadic, "b", context="ctx") == ("b", "ctx")
    assert call_handler(Callable(), "b", "t", context="ctx") == "ctx"
