"""The build context of the stack images: a reproducible wheel, requirements, pins, CA bundle.

(`polyhost images build` itself runs in the Docker tests' set-up, which builds polyhost/sklearn
with it.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from polyhost.backends.docker.build_context import (
    Checkout,
    ContextError,
    PipSource,
    assemble,
    build_wheel,
    extra_names,
    gather_find_links,
    pip_source,
    wheel_requirements,
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(Checkout.find(), tmp_path_factory.mktemp("wheel"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_wheel_is_the_same_bytes_when_the_code_is(wheel: Path, tmp_path: Path) -> None:
    again = build_wheel(Checkout.find(), tmp_path)
    assert digest(again) == digest(wheel)  # so Docker's cache skips the install layer


def test_requirements_hold_polyhosts_and_the_stacks(wheel: Path) -> None:
    names = {r.name.lower() for r in wheel_requirements(wheel, "sklearn")}
    assert {"uvicorn", "psutil", "scikit-learn", "joblib"} <= names
    assert "torch" not in names
    assert extra_names(wheel, "sklearn") == {"scikit-learn", "joblib", "numpy"}


def test_the_context_pins_the_frameworks_installed_here(wheel: Path, tmp_path: Path) -> None:
    import sklearn

    folder = assemble(Checkout.find(), "sklearn", tmp_path / "ctx", wheel)
    assert {p.name for p in folder.iterdir()} == {
        "Dockerfile",
        "entrypoint.sh",
        "wheels",
        "requirements.txt",
        "constraints.txt",
        "build-ca.crt",
        "wheels-extra",
    }
    assert list((folder / "wheels-extra").iterdir()) == []
    assert f"scikit-learn=={sklearn.__version__}" in (folder / "constraints.txt").read_text()
    dockerfile = (folder / "Dockerfile").read_text()
    assert "accept-bind-to-port=true" in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile


def test_an_unknown_checkout_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no polyhost checkout found"):
        Checkout.find(tmp_path)


def test_the_command_names_the_stacks_when_one_is_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from polyhost.cli import main

    assert main(["images", "build", "cobol"]) == 1
    error = capsys.readouterr().err
    assert "unknown stack cobol" in error and "sklearn, pytorch, tensorflow" in error


def test_find_links_copies_top_level_packages_only(wheel: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "nested").mkdir(parents=True)
    second.mkdir()
    (first / "torch-2.0+cpu-cp311-none-linux_x86_64.whl").write_bytes(b"first")
    (first / "notes.txt").write_text("not a package")
    (first / "nested" / "deep-1.0.tar.gz").write_bytes(b"pip does not look here")
    (second / "torch-2.0+cpu-cp311-none-linux_x86_64.whl").write_bytes(b"second")
    (second / "joblib-1.4.tar.gz").write_bytes(b"sdist")
    outside = tmp_path / "secret.whl"
    outside.write_bytes(b"a link could point anywhere")
    (second / "linked-1.0-py3-none-any.whl").symlink_to(outside)

    gathered = tmp_path / "gathered"
    names = gather_find_links([first, second], gathered)
    assert names == ["joblib-1.4.tar.gz", "torch-2.0+cpu-cp311-none-linux_x86_64.whl"]
    assert (gathered / names[1]).read_bytes() == b"first"  # the first folder wins, as in pip

    folder = assemble(Checkout.find(), "sklearn", tmp_path / "ctx", wheel, gathered)
    assert sorted(p.name for p in (folder / "wheels-extra").iterdir()) == names
    dockerfile = (folder / "Dockerfile").read_text()
    assert "COPY wheels-extra/ /wheels-extra/" in dockerfile
    assert "--find-links /wheels-extra" in dockerfile
    assert '--index-url "$POLYHOST_PIP_INDEX_URL"' in dockerfile


def test_find_links_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhost.backends.docker import build_context

    for name in ("a-1.whl", "b-1.whl"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(build_context, "MAX_FIND_LINKS_FILES", 1)
    with pytest.raises(ContextError, match="more than 1 packages"):
        gather_find_links([tmp_path], tmp_path / "out")


def test_pip_source_prefers_the_command_line_then_the_host(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nindex-url = https://mirror.example/simple\nfind-links = {wheels}\n"
        "  https://mirror.example/links\n"
    )
    environ = {"PIP_CONFIG_FILE": str(conf)}
    source, notes = pip_source(None, [], environ)
    assert source == PipSource("https://mirror.example/simple", (wheels.resolve(),))
    assert notes == ["the host's pip find-links https://mirror.example/links is a URL; only "
                     "folders are used"]  # fmt: skip

    environ["PIP_INDEX_URL"] = "https://env.example/simple"
    assert pip_source(None, [], environ)[0].index_url == "https://env.example/simple"
    given, _ = pip_source("https://cli.example/simple", [tmp_path], environ)
    assert given == PipSource("https://cli.example/simple", (tmp_path.resolve(),))

    nothing = {"PIP_CONFIG_FILE": "/dev/null"}
    assert pip_source(None, [], nothing) == (PipSource(), [])
    with pytest.raises(ContextError, match="is not a folder"):
        pip_source(None, [tmp_path / "missing"], nothing)
    with pytest.raises(ContextError, match="not an http"):
        pip_source("mirror.example", [], nothing)


def test_the_command_passes_the_pip_source_to_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyhost.backends.docker import build
    from polyhost.cli import main

    seen: list[build.BuildRequest] = []

    def fake_build(request: build.BuildRequest) -> list[str]:
        seen.append(request)
        return ["polyhost/sklearn:test"]

    monkeypatch.setattr(build, "build", fake_build)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    command = [
        "images", "build", "sklearn", "--pip-index-url", "https://mirror.example/simple",
        "--pip-find-links", str(tmp_path / "a"), "--pip-find-links", str(tmp_path / "b"),
    ]  # fmt: skip
    assert main(command) == 0, capsys.readouterr().err
    request = seen[0]
    assert request.stacks == ("sklearn",)
    assert request.pip == PipSource(
        "https://mirror.example/simple", ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    )
    assert build.build_args(request) == {
        "BASE_IMAGE": "python:3.11-slim",
        "POLYHOST_PIP_INDEX_URL": "https://mirror.example/simple",
        "TORCH_INDEX_URL": "https://mirror.example/simple",
    }
    assert build.build_args(build.BuildRequest()) == {"BASE_IMAGE": "python:3.11-slim"}
