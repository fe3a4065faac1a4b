"""What keeps tenants' containers apart on one machine: networks, users, files.

On SageMaker a container shares a network only with the other containers of its instance, the
runtime API is the only way in, and the container cannot read the service's files. A server
shared by tenants (`--auth-file`) keeps that true here:

- **Networks** (`--isolate`, on by default with auth): each instance gets a network namespace
  of its own (`netns.py`; the Docker backend's equivalent is a pause container with no network,
  which the instance's containers join). A machine that cannot make namespaces is refused with
  auth unless the operator says `--no-isolate`: sharing the host's network would let one
  tenant's container POST to another's port with no signature and no policy.
- **Users** (`--container-user`, process backend): with auth, each instance's processes run as
  a uid of their own, with no groups, so they cannot read the server's state dir (0711: open
  by a known path only), database, logs, auth file or admin token (0600, `protect_files`),
  nor another instance's processes and environment. That needs a server that may switch
  users (root); a server that cannot, or whose files such a user could not reach anyway (its
  own interpreter or state dir behind a folder only its owner may enter), says so at start and
  runs them as its own user. Docker containers have their own filesystem: they run as the
  image's USER, or as nobody when the image names none (`docker/run.py`).
- **Ray** isolates neither: its containers run on their nodes with the process backend as the
  node agent's user, sharing the node's network. The server says so at start.

`plan` decides from the settings and tells, at start, what is isolated and what is not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polyhost.backends import netns
from polyhost.backends.base import ContainerUser
from polyhost.settings import Settings

log = logging.getLogger("polyhost.backends.confinement")

DEFAULT_USERS = (2_000_000_000, 2_000_099_999)
STATE_DIR_MODE = 0o711  # enter, not list: a container opens its model by path, finds nothing else


class ConfinementError(Exception):
    """The server must not start as configured; the message says what to change."""


class UserPool:
    """Uids handed to instances: one per live instance, picked at random in the range, so two
    servers on one machine rarely hand out the same one (a single uid serves every instance)."""

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        if self.first == self.last:
            return f"user {self.first} (every instance)"
        return f"users {self.first}-{self.last}, one per instance"

    def allocate(self) -> ContainerUser:
        with self._lock:
            if self.first == self.last:
                return ContainerUser(self.first, self.first)
            free = self.last - self.first + 1 - len(self._taken)
            if free <= 0:
                raise ConfinementError(
                    f"every container user of {self.first}-{self.last} (--container-user) is taken"
                )
            while True:
                uid = random.randint(self.first, self.last)
                if uid not in self._taken:
                    self._taken.add(uid)
                    return ContainerUser(uid, uid)

    def release(self, user: ContainerUser) -> None:
        with self._lock:
            self._taken.discard(user.uid)


@dataclass
class Confinement:
    """What the server isolates; `notes` is what it says at start (warnings first)."""

    networks: bool = False
    users: UserPool | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tell(self) -> None:
        for warning in self.warnings:
            log.warning("%s", warning)
        for note in self.notes:
            log.info("%s", note)


def parse_users(value: str) -> tuple[int, int] | None:
    """`--container-user`: None for `server`, the default range for `auto`, else UID or
    FIRST-LAST (ValueError when malformed or 0: root is no container user)."""
    text = value.strip().lower()
    if text == "server":
        return None
    if text in ("", "auto"):
        return DEFAULT_USERS
    first_text, _, last_text = text.partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if last_text else first
    except ValueError:
        raise ValueError(
            f"--container-user must be auto, server, a uid or a uid range FIRST-LAST, not {value!r}"
        ) from None
    if not 0 < first <= last < 2**32 - 1:
        raise ValueError(f"--container-user {value!r}: uids from 1 up, FIRST no more than LAST")
    return first, last


def can_switch_users() -> bool:
    """Whether this process may run children as other users (CAP_SETUID and CAP_SETGID)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << 6)) and bool(caps & (1 << 7))
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def unreachable_by_others(path: Path, *, execute: bool = False) -> str | None:
    """Why a user that is neither the owner nor in the group cannot read (or run) `path`: the
    first folder on the way it may not enter, or the file's own mode; None when it can."""
    try:
        resolved = path.resolve()
        for folder in reversed(resolved.parents):
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                return f"{folder} is mode {stat.S_IMODE(mode):04o}"
        mode = resolved.stat().st_mode
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    wanted = stat.S_IXOTH if execute or stat.S_ISDIR(mode) else stat.S_IROTH
    if not mode & wanted:
        return f"{resolved} is mode {stat.S_IMODE(mode):04o}"
    return None


def plan(
    settings: Settings,
    *,
    probe: Callable[[], str | None] | None = None,
    switch_users: Callable[[], bool] | None = None,
) -> Confinement:
    """Decide what to isolate; raises ConfinementError when the server must not start.
    `probe` and `switch_users` stand in for what the machine allows (`netns.probe`,
    `can_switch_users`)."""
    probe = probe or netns.probe
    switch_users = switch_users or can_switch_users
    confinement = Confinement()
    auth = settings.auth_file is not None
    backend = settings.backend
    wanted = settings.isolation_wanted
    explicit = settings.isolate is True
    no_isolate = (
        "pass --no-isolate to run without it (every container can then reach every other "
        "container's port and the admin listener)"
    )
    if wanted and backend == "ray":
        if explicit:
            raise ConfinementError(f"--isolate: the ray backend does not isolate; {no_isolate}")
        confinement.warnings.append(
            "the ray backend does not isolate containers: they share their node's network and "
            "run as the node agent's user, so a container can reach another's port directly"
        )
        wanted = False
    elif wanted and backend == "docker" and settings.docker_network:
        raise ConfinementError(
            f"--docker-network {settings.docker_network} puts containers of every instance on "
            f"one network, which isolation does not allow; drop it, or {no_isolate}"
        )
    elif wanted:
        reason = probe()
        if reason is not None:
            why = "--auth-file shares this server between tenants" if auth else "--isolate"
            raise ConfinementError(
                f"this machine cannot make network namespaces ({reason}), and {why}: each "
                "instance's containers need a network of their own. Run the server as root "
                f"(or with CAP_SYS_ADMIN), or {no_isolate}"
            )
    confinement.networks = wanted
    if wanted:
        kind = "a pause container's namespace" if backend == "docker" else "a namespace"
        confinement.notes.append(
            f"network isolation on: each instance's containers run in {kind} of their own, "
            "reach each other on loopback and nothing else; only the router reaches them"
        )
    elif auth and backend != "ray":
        confinement.warnings.append(
            "--no-isolate: containers share the host's network; a tenant's container can reach "
            "every other container's port, bypassing signatures and policies"
        )
    confinement.users = _users(settings, confinement, switch_users)
    return confinement


def _users(
    settings: Settings, confinement: Confinement, switch_users: Callable[[], bool]
) -> UserPool | None:
    """The process backend's container users (see the module docstring)."""
    auth = settings.auth_file is not None
    if settings.backend != "process":
        if auth and settings.backend == "docker":
            confinement.notes.append(
                "docker containers run as their image's USER, or as nobody when it names none; "
                "they see only their image and their model, read-only"
            )
        return None
    text = settings.container_user.strip().lower()
    try:
        users = parse_users(settings.container_user)
    except ValueError as error:
        raise ConfinementError(str(error)) from None
    exposed = (
        "process containers run as the server's user and can read what it reads: the state "
        "dir, the auth file, the admin token"
    )
    if users is None:
        if auth:
            confinement.warnings.append(f"--container-user server: {exposed}")
        return None
    automatic = text in ("", "auto")
    if automatic and not auth:
        return None  # the loopback developer server: today's behaviour
    if not switch_users():
        if not automatic:
            raise ConfinementError(
                f"--container-user {settings.container_user}: this server may not switch users "
                "(it needs root, or CAP_SETUID and CAP_SETGID)"
            )
        confinement.warnings.append(f"the server may not switch users (it is not root): {exposed}")
        return None
    blocked = [
        f"{what}: {why}"
        for what, path, execute in (
            ("the state dir", settings.state_dir, False),
            ("the server's Python", Path(sys.executable), True),
        )
        if (why := unreachable_by_others(path, execute=execute)) is not None
    ]
    if blocked and automatic:
        confinement.warnings.append(
            "other users could not reach what the built-in stacks need ("
            + "; ".join(blocked)
            + f"), so {exposed}. Make those folders enterable by others (chmod o+x) or name "
            "the users with --container-user"
        )
        return None
    if blocked:
        confinement.warnings.append(
            "the container users cannot reach " + "; ".join(blocked) + ": containers that need "
            "it will not start"
        )
    pool = UserPool(*users)
    confinement.notes.append(
        f"process containers run as {pool.description}, with no groups; the state dir, auth "
        "file and admin token are unreadable to them"
    )
    return pool


def protect_files(settings: Settings, token_file: Path | None) -> None:
    """Keep what the server writes unreadable to its container users (see the docstring).

    From here on the server creates files 0600 and folders 0700 (umask 077); the state dir is
    0711, and so are the folders on the way to a container's working folder and model; what
    earlier runs left readable is closed; an auth file or admin token other users could read
    loses its bits for others (the operator is told)."""
    os.umask(0o077)
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, STATE_DIR_MODE)
    for entry in state.iterdir():
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode):
                os.chmod(entry, stat.S_IMODE(info.st_mode) & 0o700)
    for shared in (settings.containers_dir, settings.artifact_cache_dir / "models"):
        shared.mkdir(parents=True, exist_ok=True)
        os.chmod(shared, STATE_DIR_MODE)
    os.chmod(settings.artifact_cache_dir, STATE_DIR_MODE)
    for folder, _dirs, files in os.walk(settings.containers_dir):  # earlier runs' logs
        for name in files:
            with contextlib.suppress(OSError):
                log_path = os.path.join(folder, name)
                info = os.lstat(log_path)
                if stat.S_ISREG(info.st_mode):
                    os.chmod(log_path, stat.S_IMODE(info.st_mode) & 0o700)
    for what, secret in (("auth file", settings.auth_file), ("admin token", token_file)):
        if secret is not None and unreachable_by_others(secret) is None:
            mode = stat.S_IMODE(secret.stat().st_mode)
            os.chmod(secret, mode & ~0o007)
            log.warning(
                "the %s %s was readable by every user (mode %04o); made it mode %04o, since "
                "containers run as other users",
                what,
                secret,
                mode,
                mode & ~0o007,
            )


def open_path_to(folder: Path, top: Path) -> None:
    """Let container users enter (not list) every folder from `top` down to `folder`."""
    current = folder
    while True:
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(current.stat().st_mode)
            if mode & 0o101 != 0o101:
                os.chmod(current, mode | 0o101)
        if current == top or current.parent == current:
            return
        current = current.parent


def open_for_reading(root: Path) -> None:
    """Make a model folder readable by container users: files r for all (x where the owner
    has it), folders r-x for all. Model folders are read-only, shared, and hold no secret."""
    for folder, _dirs, files in os.walk(root):
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(os.stat(folder).st_mode)
            if mode & 0o005 != 0o005:
                os.chmod(folder, mode | 0o555)
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode):
                    continue
                mode = stat.S_IMODE(info.st_mode)
                wanted = mode | 0o444 | (0o111 if mode & 0o100 else 0)
                if wanted != mode:
                    os.chmod(path, wanted)
