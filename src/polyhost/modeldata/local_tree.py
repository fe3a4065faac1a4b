"""Copying a local model folder (`file:///srv/models/m/`) into the cache, safely.

A container never sees the folder a `file://` URL names, only a copy in the content-addressed
cache (`models/<sha256>/`), as SageMaker copies model data onto the instance. The copy is what
makes a folder safe to serve: the original may change, be re-linked or hold things no container
should reach, and a bind mount of it would show all of that.

The walk holds a descriptor for every folder it is in and opens each entry relative to it with
`O_NOFOLLOW`, so a name swapped for a symbolic link mid-walk is refused rather than followed,
and nothing is ever reached through a path that was checked earlier. What it takes:

- regular files, copied (hashed while copied) without their write, set-uid or set-gid bits;
- folders, empty ones too;
- symbolic links whose target stays inside the folder, kept as relative links (a chain of links
  is checked once the copy is complete, on the copy itself, as archive extraction does).

Refused, with the entry named: a link leading out of the folder, a FIFO, a device, a socket, the
server's own state (a forbidden path met under another name), more files or bytes than the
archive limits allow, and folders nested deeper than `MAX_DEPTH`.

Whether a folder changed since its last copy is decided without reading it: its *validator* is
a digest of (relative path, kind, size, mtime_ns, device and inode) of every entry, so an
unchanged folder is not copied twice.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polyhost.modeldata.errors import ArtifactError, quote_member
from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.local_files import kind_of

CHUNK = 1024 * 1024
MAX_DEPTH = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


@dataclass(frozen=True)
class _Entry:
    rel: str  # relative path, '/'-separated
    kind: Literal["dir", "file", "link"]
    info: os.stat_result
    parent_fd: int  # open while the entry is handed out
    name: str
    link: str = ""  # a link's target, as written


class _Walk:
    """One depth-first walk of the folder open at `root_fd`, in name order."""

    def __init__(
        self,
        root_fd: int,
        label: str,
        limits: FetchLimits,
        forbidden: dict[tuple[int, int], str],
    ) -> None:
        self._root_fd = root_fd
        self._label = label
        self._limits = limits
        self._forbidden = forbidden
        self.count = 0

    def refused(self, rel: str, why: str) -> ArtifactError:
        return ArtifactError(f"Model data {self._label} was refused: {quote_member(rel)} {why}.")

    def entries(self) -> Iterator[_Entry]:
        yield from self._folder(self._root_fd, "", 0)

    def _folder(self, fd: int, rel_dir: str, depth: int) -> Iterator[_Entry]:
        if depth > MAX_DEPTH:
            raise self.refused(
                rel_dir, f"is nested more than {MAX_DEPTH} folders deep in the model folder"
            )
        with os.scandir(fd) as listing:
            names = sorted(entry.name for entry in listing)
        for name in names:
            self._limits.check(self._label, "copy")
            self.count += 1
            if self.count > self._limits.max_files:
                raise ArtifactError(
                    f"Model data {self._label} was refused: it has more than "
                    f"{self._limits.max_files} files and folders."
                )
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since it was listed
            what = self._forbidden.get((info.st_dev, info.st_ino))
            if what is not None:
                raise self.refused(rel, f"is {what}, which is never served to a container")
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                yield _Entry(rel, "link", info, fd, name, os.readlink(name, dir_fd=fd))
            elif stat.S_ISREG(mode):
                yield _Entry(rel, "file", info, fd, name)
            elif stat.S_ISDIR(mode):
                child = self._open_folder(fd, name, rel, info)
                try:
                    yield _Entry(rel, "dir", info, fd, name)
                    yield from self._folder(child, rel, depth + 1)
                finally:
                    os.close(child)
            else:
                raise self.refused(
                    rel,
                    f"is {kind_of(mode)}; a model folder may hold only files, folders and "
                    "symbolic links that stay inside it",
                )

    def _open_folder(self, fd: int, name: str, rel: str, info: os.stat_result) -> int:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            raise self.refused(rel, f"could not be read: {error.strerror}") from None
        opened = os.fstat(child)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(child)
            raise self.refused(rel, "changed while the model folder was being copied")
        return child


def _validator_line(entry: _Entry) -> bytes:
    info = entry.info
    return (
        f"{entry.rel}\0{entry.kind}\0{info.st_size}\0{info.st_mtime_ns}\0"
        f"{info.st_dev}:{info.st_ino}\0{entry.link}\n"
    ).encode("utf-8", "surrogateescape")


def _root_line(root_fd: int) -> bytes:
    info = os.fstat(root_fd)
    return f".\0{info.st_dev}:{info.st_ino}\0{info.st_mtime_ns}\n".encode()


def folder_validator(
    root_fd: int, label: str, limits: FetchLimits, forbidden: dict[tuple[int, int], str]
) -> dict[str, str]:
    """What the folder open at `root_fd` looks like, without reading a file: equal validators
    mean an unchanged folder. Refuses what a copy would refuse, but for file contents."""
    digest = hashlib.sha256(b"folder\n")
    digest.update(_root_line(root_fd))
    walk = _Walk(root_fd, label, limits, forbidden)
    for entry in walk.entries():
        digest.update(_validator_line(entry))
    return {"folder": digest.hexdigest(), "entries": str(walk.count)}


def _link_inside(rel: str, target: str, original_root: Path) -> str | None:
    """The target a link gets in the copy, or None when it plainly leads out of the folder.

    A relative target is kept as written, so it means in the copy what it meant in the
    original (a chain through other links is checked on the finished copy). An absolute target
    naming a place inside the original folder is made relative, so the copy points into
    itself, never back at the original."""
    base = posixpath.dirname(rel)
    if posixpath.isabs(target):
        root = str(original_root)
        normal = posixpath.normpath(target)
        if normal != root and not normal.startswith(root.rstrip("/") + "/"):
            return None
        return posixpath.relpath(posixpath.relpath(normal, root), base or ".")
    inside = posixpath.normpath(posixpath.join(base, target))
    if inside == ".." or inside.startswith("../"):
        return None
    return target


def copy_folder(
    root_fd: int,
    original_root: Path,
    dest: Path,
    label: str,
    limits: FetchLimits,
    forbidden: dict[tuple[int, int], str],
) -> tuple[str, dict[str, str]]:
    """Copy the folder open at `root_fd` (found at `original_root`) into the empty folder
    `dest`; returns (content sha256, validator of what was copied).

    The content hash covers every relative path, each file's sha256, each link's target and
    each folder, so equal folders share one copy in the cache whatever their URL."""
    content = hashlib.sha256(b"folder\n")
    validator = hashlib.sha256(b"folder\n")
    validator.update(_root_line(root_fd))
    walk = _Walk(root_fd, label, limits, forbidden)
    total = 0
    links: list[str] = []
    for entry in walk.entries():
        validator.update(_validator_line(entry))
        target = dest / entry.rel
        if entry.kind == "dir":
            target.mkdir(mode=0o755)
            content.update(f"{entry.rel}\0dir\n".encode("utf-8", "surrogateescape"))
        elif entry.kind == "link":
            inside = _link_inside(entry.rel, entry.link, original_root)
            if inside is None:
                raise walk.refused(
                    entry.rel,
                    f"is a symbolic link to {quote_member(entry.link)}, outside the model "
                    "folder; copy that file into the folder, or use s3:// model data",
                )
            os.symlink(inside, target)
            links.append(entry.rel)
            content.update(f"{entry.rel}\0link\0{inside}\n".encode("utf-8", "surrogateescape"))
        else:
            total += entry.info.st_size
            if total > limits.max_bytes:
                raise _too_big(label, limits, entry.rel)
            sha, total = _copy_file(walk, entry, target, limits, total, label)
            content.update(f"{entry.rel}\0{sha}\n".encode("utf-8", "surrogateescape"))
    _check_links(dest, links, walk)
    return content.hexdigest(), {"folder": validator.hexdigest(), "entries": str(walk.count)}


def _too_big(label: str, limits: FetchLimits, rel: str) -> ArtifactError:
    return ArtifactError(
        f"Model data {label} was refused: it holds more than the limit of {limits.max_bytes} "
        f"bytes (reached at {quote_member(rel)})."
    )


def _copy_file(
    walk: _Walk, entry: _Entry, target: Path, limits: FetchLimits, total: int, label: str
) -> tuple[str, int]:
    """Copy one regular file, hashing it; returns (sha256, bytes copied in all so far)."""
    try:
        fd = os.open(entry.name, _FILE_FLAGS, dir_fd=entry.parent_fd)
    except OSError as error:
        raise walk.refused(entry.rel, f"could not be read: {error.strerror}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            entry.info.st_dev,
            entry.info.st_ino,
        ):
            raise walk.refused(entry.rel, "changed while the model folder was being copied")
        os.set_blocking(fd, True)
        mode = 0o755 if opened.st_mode & 0o111 else 0o644
        total -= entry.info.st_size  # counted again below, as really read
        digest = hashlib.sha256()
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            while chunk := os.read(fd, CHUNK):
                total += len(chunk)
                if total > limits.max_bytes:
                    raise _too_big(label, limits, entry.rel)
                limits.check(label, "copy")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
    except OSError as error:
        raise walk.refused(entry.rel, f"could not be copied: {error.strerror}") from None
    finally:
        os.close(fd)
    return digest.hexdigest(), total


def _check_links(dest: Path, links: list[str], walk: _Walk) -> None:
    """Every link of the finished copy, chains included, resolves inside the copy."""
    root = os.path.realpath(dest)
    for rel in links:
        resolved = os.path.realpath(os.path.join(root, rel))
        if os.path.commonpath([resolved, root]) != root:
            raise walk.refused(
                rel,
                "is a symbolic link that leads outside the model folder (through other links)",
            )
