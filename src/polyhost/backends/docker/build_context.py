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
- `wheels-extra/`: the wheels and sdists of the `--pip-find-links` folders (or the host's pip
  configuration's find-links), which pip in the image reads with `--find-links /wheels-extra`;
  empty when none is given. An air-gapped site cannot reach PyPI, and a Docker build cannot
  see the host's folders, so the files are copied in. Only regular files with a package's
  suffix at each folder's top (pip does not look deeper) are copied, and the total is capped,
  so a mistyped folder (a home directory) fails fast instead of filling the disk.
"""

from __future__ import annotations

import configparser
import email.parser
import importlib.metadata
import importlib.util
import os
import shutil
import ssl
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

STACKS = ("sklearn", "pytorch", "tensorflow", "xgboost", "huggingface")
# 1980-01-01, the earliest time a zip file can hold: any fixed value makes wheels reproducible.
SOURCE_DATE_EPOCH = "315532800"
CA_BUNDLE_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
FIND_LINKS_DIR = "wheels-extra"
PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz")
# Bounds of what the find-links folders may add to every build context: a CPU torch and its
# dependencies fit many times over; a whole home directory does not.
MAX_FIND_LINKS_FILES = 5000
MAX_FIND_LINKS_BYTES = 32 * 1024**3


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


@dataclass(frozen=True)
class PipSource:
    """Where pip in the image gets packages: an index URL (None: pip's default, PyPI) and
    local folders of wheels and sdists."""

    index_url: str | None = None
    find_links: tuple[Path, ...] = ()


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, in the order pip reads them (later ones win)."""
    if "PIP_CONFIG_FILE" in environ:
        given = environ["PIP_CONFIG_FILE"]
        return [] if given == os.devnull else [Path(given)]
    home = Path(environ.get("HOME") or Path.home())
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        *(Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d),
        Path("/etc/pip.conf"),
        home / ".pip" / "pip.conf",
        config_home / "pip" / "pip.conf",
    ]


def host_pip_settings(environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """(index-url, find-links) of the host's pip: PIP_INDEX_URL / PIP_FIND_LINKS, else the
    `[install]` then `[global]` sections of its pip.conf files. A site that configured pip for
    its mirror should not have to say it again to build the images."""
    environ = os.environ if environ is None else environ
    parser = configparser.RawConfigParser()
    for path in pip_config_files(environ):
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue  # pip itself would complain; an unreadable file sets nothing here

    def configured(key: str) -> str | None:
        for section in ("install", "global"):
            if parser.has_option(section, key):
                return parser.get(section, key)
        return None

    index_url = environ.get("PIP_INDEX_URL") or configured("index-url")
    links = environ.get("PIP_FIND_LINKS") or configured("find-links") or ""
    return (index_url.strip() or None) if index_url else None, links.split()


def pip_source(
    index_url: str | None,
    find_links: Sequence[Path],
    environ: Mapping[str, str] | None = None,
) -> tuple[PipSource, list[str]]:
    """The pip source of a build, and notes on host settings that cannot be used.

    What is given on the command line wins, each setting on its own; what is not given comes
    from the host's pip configuration. A find-links URL of the host's is left out with a note
    (the build's network may reach it anyway through the index); a folder that is given but
    does not exist is a ContextError.
    """
    host_index, host_links = host_pip_settings(environ)
    notes: list[str] = []
    folders = [Path(p) for p in find_links]
    if not folders:
        for link in host_links:
            local = Path(link[len("file://") :]) if link.startswith("file://") else Path(link)
            if "://" in link and not link.startswith("file://"):
                notes.append(f"the host's pip find-links {link} is a URL; only folders are used")
            elif local.is_dir():
                folders.append(local)
            else:
                notes.append(f"the host's pip find-links {link} is not a folder; left out")
    for folder in folders:
        if not folder.is_dir():
            raise ContextError(f"--pip-find-links {folder} is not a folder")
    chosen = index_url if index_url else host_index
    if chosen is not None and not chosen.startswith(("http://", "https://", "file://")):
        raise ContextError(f"--pip-index-url {chosen} is not an http(s):// or file:// URL")
    return PipSource(chosen, tuple(f.resolve() for f in folders)), notes


def gather_find_links(folders: Sequence[Path], into: Path) -> list[str]:
    """Copy the wheels and sdists at the top of `folders` into `into`; returns their names.

    The first folder holding a name wins, as with pip's own find-links order. Symlinks and
    anything not a regular file are skipped (a link could point anywhere on the host).
    ContextError when the folders hold more than the bounds allow.
    """
    into.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Path] = {}
    total = 0
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name in chosen or not entry.name.endswith(PACKAGE_SUFFIXES):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                total += entry.stat(follow_symlinks=False).st_size
                chosen[entry.name] = Path(entry.path)
                if len(chosen) > MAX_FIND_LINKS_FILES or total > MAX_FIND_LINKS_BYTES:
                    raise ContextError(
                        f"the --pip-find-links folders hold more than {MAX_FIND_LINKS_FILES} "
                        f"packages or {MAX_FIND_LINKS_BYTES // 1024**3} GiB; give a folder of "
                        "just the wheels the images need (e.g. made by `pip download`)"
                    )
    for name, path in chosen.items():
        shutil.copyfile(path, into / name)
    return sorted(chosen)


def _link_or_copy(source: Path, target: Path) -> None:
    """Files of the scratch folder, shared by every stack's context without a second copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def assemble(
    checkout: Checkout,
    stack: str,
    folder: Path,
    wheel: Path,
    find_links: Path | None = None,
) -> Path:
    """Fill `folder` with the build context of `stack`; returns the folder.

    `find_links`: a folder made by gather_find_links, whose files become `wheels-extra/`.
    """
    dockerfile = checkout.dockerfile(stack)
    if not dockerfile.is_file():
        raise ContextError(f"{dockerfile} is missing: is {checkout.root} a polyhost checkout?")
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "wheels").mkdir(parents=True)
    (folder / FIND_LINKS_DIR).mkdir()
    if find_links is not None:
        for path in sorted(find_links.iterdir()):
            if path.is_file():
                _link_or_copy(path, folder / FIND_LINKS_DIR / path.name)
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
