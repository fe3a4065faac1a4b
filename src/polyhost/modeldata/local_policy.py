"""Which local paths `file://` model data may come from.

A `file://` URL names any path of the server's machine, and whoever may call CreateModel picks
it. Served as it is, `file:///` would hand a container the whole host: the auth file with every
principal's secret, the state database, every tenant's logs, the Docker daemon's socket. So:

- **Allowed folders.** With `--auth-file` (a server shared by principals who do not trust each
  other), `file://` model data must resolve, symlinks followed, to a path under a folder the
  operator allows (`--allow-model-dir DIR`, repeatable); with none allowed, `file://` is
  refused and tenants use `s3://`, as on SageMaker. The loopback-only developer server without
  auth takes any path, unless the operator names allowed folders anyway.
- **Forbidden paths.** Whatever is allowed, a path that is, holds or lies inside the state dir
  (database, logs, model cache), the auth file, the admin token file or the Docker socket is
  never served. A folder is copied before a container sees it (`local_tree`), and the copy
  refuses any socket it meets, so a socket below a folder is never reached either.

The same policy decides twice: at CreateModel (the control plane answers a ValidationException
before anything is stored) and when the data is fetched (`FileSource`), because a path and its
symlinks can change in between. The second time it also checks where the descriptor actually
opened lies (`check_opened`), so a symlink swapped in after the check is caught too.

Paths are resolved at every check, not once at start: allowed folders the operator creates or
re-links later count as they are then.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from polyhost.modeldata.errors import ArtifactError

if TYPE_CHECKING:
    from polyhost.settings import Settings

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
# The socket of the daemon polyhost's test script starts, which the Docker backend also tries.
POLYHOST_DOCKER_SOCKET = "/run/polyhost/docker.sock"


class LocalPathRefused(ArtifactError):
    """`file://` model data whose path the policy does not serve; the message says why."""


@dataclass(frozen=True)
class Forbidden:
    """A path never served to a container, and what it is, in words for a message."""

    path: Path
    what: str


def resolve(path: Path) -> Path:
    """`path` made absolute with every symlink followed (as far as it exists)."""
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    """True when `path` is `root` or lies below it (both resolved)."""
    return path == root or root in path.parents


def file_url_path(url: str) -> Path | None:
    """The local path a `file://` URL names, or None when it is not a local file URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parts.path))


def docker_sockets(environ: dict[str, str] | None = None) -> list[Path]:
    """The Docker daemon's socket as the `docker` CLI finds it, the default one, and the one
    the Docker backend falls back to when DOCKER_HOST is unset."""
    environ = dict(os.environ) if environ is None else environ
    found = [Path(DEFAULT_DOCKER_SOCKET), Path(POLYHOST_DOCKER_SOCKET)]
    host = environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        found.append(Path(host[len("unix://") :]))
    return found


@dataclass(frozen=True)
class LocalModelPolicy:
    """Where `file://` model data may come from (see the module's docstring).

    `allowed` None takes any path (the unauthenticated developer server); a tuple, possibly
    empty, takes only paths under those folders. `forbidden` are refused either way."""

    allowed: tuple[Path, ...] | None = None
    forbidden: tuple[Forbidden, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalModelPolicy:
        """The server's policy: allowed folders when auth is on or folders are named; the state
        dir, auth file, admin token file and Docker socket forbidden."""
        allowed: tuple[Path, ...] | None = None
        if settings.auth_file is not None or settings.allow_model_dirs:
            allowed = tuple(settings.allow_model_dirs)
        forbidden = [Forbidden(settings.state_dir, "the server's state dir")]
        if settings.auth_file is not None:
            forbidden.append(Forbidden(settings.auth_file, "the server's auth file"))
        if settings.admin_token_file is not None:
            forbidden.append(Forbidden(settings.admin_token_file, "the admin token file"))
        forbidden += [Forbidden(p, "the Docker daemon's socket") for p in docker_sockets()]
        return cls(allowed, tuple(forbidden))

    def forbidding(self, paths: Iterable[Forbidden]) -> LocalModelPolicy:
        """This policy with more forbidden paths."""
        return LocalModelPolicy(self.allowed, (*self.forbidden, *paths))

    def refusal(self, path: Path) -> str | None:
        """Why the data at `path` may not be served to a container (a sentence that says what
        to do instead), or None when it may. `path` is resolved here, symlinks followed."""
        try:
            where = resolve(path)
        except (OSError, ValueError):
            return f"{path} cannot be resolved to a path on the server"
        subject = str(path) if where == path else f"{path} (which resolves to {where})"
        if self.allowed is not None:
            roots = [resolve(root) for root in self.allowed]
            if not roots:
                return (
                    f"{subject}: this server takes file:// model data only from folders its "
                    "operator allows, and it allows none. Use s3:// model data, or start the "
                    "server with --allow-model-dir DIR naming the folder that holds the models"
                )
            if not any(_inside(where, root) for root in roots):
                listed = ", ".join(str(root) for root in roots)
                return (
                    f"{subject} is outside the folders this server allows model data from "
                    f"({listed}). Put the model under one of them, use s3:// model data, or "
                    "start the server with --allow-model-dir naming its folder"
                )
        for forbidden in self.forbidden:
            try:
                other = resolve(forbidden.path)
            except (OSError, ValueError):
                continue
            relation = _relation(where, other)
            if relation is not None:
                return (
                    f"{subject} {relation} {forbidden.what}, which is never served to a "
                    "container. Name a folder or archive that holds only the model"
                )
        return None

    def check(self, path: Path, label: str) -> Path:
        """`path` resolved, or LocalPathRefused (a message fit for a FailureReason)."""
        reason = self.refusal(path)
        if reason is not None:
            raise LocalPathRefused(f"Model data {label} was refused: {reason}.")
        return resolve(path)

    def check_opened(self, fd: int, expected: Path, label: str) -> None:
        """Raise LocalPathRefused unless the descriptor `fd`, opened from the resolved path
        `expected`, is still a path this policy serves (a symlink swapped in between the check
        and the open has moved it)."""
        where = opened_path(fd, expected)
        if where is None:
            raise LocalPathRefused(
                f"Model data {label} was refused: {expected} changed while it was being opened "
                "(a file or symbolic link was replaced); try again once it holds still."
            )
        self.check(where, label)

    def forbidden_inodes(self) -> dict[tuple[int, int], str]:
        """(device, inode) of every forbidden path that exists: a copy that meets one of them
        under another name (a bind mount, a hard link) refuses it too."""
        found: dict[tuple[int, int], str] = {}
        for forbidden in self.forbidden:
            try:
                info = os.stat(forbidden.path)
            except (OSError, ValueError):
                continue
            found[(info.st_dev, info.st_ino)] = forbidden.what
        return found


def _relation(path: Path, forbidden: Path) -> str | None:
    """How `path` meets a forbidden path, in words, or None when they do not overlap."""
    if path == forbidden:
        return "is"
    if path in forbidden.parents:
        return "holds"
    if forbidden in path.parents:
        return "lies inside"
    return None


def opened_path(fd: int, expected: Path) -> Path | None:
    """Where the open descriptor `fd` lies: the kernel's own name for it where /proc tells
    (Linux), else `expected` when that path still names the same file; None when it does not."""
    try:
        named = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        named = ""
    if named.startswith("/") and not named.endswith(" (deleted)"):
        return Path(named)
    try:
        opened = os.fstat(fd)
        current = os.stat(expected)
    except OSError:
        return None
    if (opened.st_dev, opened.st_ino) != (current.st_dev, current.st_ino):
        return None
    return expected
