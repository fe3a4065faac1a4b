"""The build context of one stack image, assembled in a scratch folder.

A Dockerfile in the checkout's `images/<stack>/` cannot reach the rest of the checkout, so what
it copies is put beside it here:

- `wheels/polyhost-<version>-py3-none-any.whl`, built from the checkout with `pip wheel`. The
  wheel is built with a fixed SOURCE_DATE_EPOCH so unchanged code gives the same bytes, and
  Docker's layer cache then skips the install step: a second build changes nothing.
- `requirements.txt`: polyhost's own dependencies plus the stack's extra, read from the
  wheel's metadata, installed in a layer of their own (rebuilt only when they change).
- `constraints.txt`: the versions of the stack's frameworks installed where the image is
  built. A model pickled here (scikit-learn, joblib) must load in the image, and pickles
  are only safe between equal versions. Nothing is pinned for a framework not installed here.
- `build-ca.crt`: this machine's CA bundle, so pip in the build trusts what this machine
  trusts (a TLS-intercepting proxy); empty when none is found (pip then uses its own).
- `entrypoint.sh`, shared by every stack.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import importlib.util
import os
import shutil
import ssl
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

STACKS = ("sklearn", "pytorch", "tensorflow", "xgboost", "huggingface")
# 1980-01-01, the earliest time a zip file can hold: any fixed value makes wheels reproducible.
SOURCE_DATE_EPOCH = "315532800"
CA_BUNDLE_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class ContextError(Exception):
    """The build context cannot be assembled; the message says what is missing."""


@dataclass(frozen=True)
class Checkout:
    """A polyhost source checkout: pyproject.toml, src/polyhost and images/."""

    root: Path

    @classmethod
    def find(cls, given: Path | None = None) -> Checkout:
        """`given`, else the checkout this polyhost is imported from, else the working folder."""
        import polyhost

        candidates = (
            [given]
            if given is not None
            else [Path(polyhost.__file__).resolve().parents[2], Path.cwd()]
        )
        for root in candidates:
            if (root / "pyproject.toml").is_file() and (root / "images").is_dir():
                return cls(root.resolve())
        where = ", ".join(str(c) for c in candidates)
        raise ContextError(
            f"no polyhost checkout found at {where}: building the images needs the source "
            "(pyproject.toml and images/); run from a checkout or pass --source DIR"
        )

    def dockerfile(self, stack: str) -> Path:
        return self.root / "images" / stack / "Dockerfile"


def build_wheel(checkout: Checkout, into: Path) -> Path:
    """A wheel of the checkout (no dependencies) in `into`; ContextError with pip's output.

    Built from a clean copy of the sources: setuptools builds in-tree and keeps `build/lib`
    between runs, so a module deleted from the checkout could otherwise ride along.
    """
    into.mkdir(parents=True, exist_ok=True)
    source = into / "source"
    clean = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    shutil.copytree(checkout.root / "src", source / "src", ignore=clean)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (checkout.root / name).is_file():
            shutil.copy2(checkout.root / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(into)]
    if importlib.util.find_spec("setuptools") is not None:  # build here, fetching nothing
        command.append("--no-build-isolation")
    command.append(str(source))
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wheels = sorted(into.glob("polyhost-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise ContextError(
            f"pip could not build a wheel of {checkout.root} (exit {done.returncode}):\n"
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return wheels[0]


def wheel_requirements(wheel: Path, extra: str) -> list[Requirement]:
    """The wheel's Requires-Dist that apply with `extra` on this platform, markers resolved."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    found: list[Requirement] = []
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            requirement.marker = None
            found.append(requirement)
    return found


def extra_names(wheel: Path, extra: str) -> set[str]:
    """The distributions the stack's extra adds to polyhost's own dependencies."""
    base = {str(canonicalize_name(r.name)) for r in wheel_requirements(wheel, "")}
    return {str(canonicalize_name(r.name)) for r in wheel_requirements(wheel, extra)} - base


def installed_pins(names: set[str]) -> list[str]:
    """`name==version` for each of `names` installed here (local labels like +cpu dropped)."""
    pins: list[str] = []
    for name in sorted(names):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+', 1)[0]}")
    return pins


def ca_bundle() -> Path | None:
    """The CA bundle this machine's Python and pip trust, if one is a file."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    default = ssl.get_default_verify_paths().cafile
    if default and Path(default).is_file():
        return Path(default)
    return next((Path(p) for p in CA_BUNDLE_CANDIDATES if Path(p).is_file()), None)


def assemble(checkout: Checkout, stack: str, folder: Path, wheel: Path) -> Path:
    """Fill `folder` with the build context of `stack`; returns the folder."""
    dockerfile = checkout.dockerfile(stack)
    if not dockerfile.is_file():
        raise ContextError(f"{dockerfile} is missing: is {checkout.root} a polyhost checkout?")
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "wheels").mkdir(parents=True)
    shutil.copy2(dockerfile, folder / "Dockerfile")
    shutil.copy2(checkout.root / "images" / "entrypoint.sh", folder / "entrypoint.sh")
    shutil.copy2(wheel, folder / "wheels" / wheel.name)
    requirements = [str(r) for r in wheel_requirements(wheel, stack)]
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    pins = installed_pins(extra_names(wheel, stack))
    (folder / "constraints.txt").write_text("".join(f"{p}\n" for p in pins), encoding="utf-8")
    bundle = ca_bundle()
    target = folder / "build-ca.crt"
    if bundle is not None:
        shutil.copyfile(bundle, target)
    else:
        target.write_bytes(b"")
    # Docker's cache compares file modes; keep them the same from build to build.
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
