"""Safe extraction of a model archive (`model.tar.gz`) into a folder.

A model archive comes from whoever can call CreateModel, so it is untrusted input. Two layers
guard the disk: our own check of every member before anything is written (so the refusal names
the member and says what is wrong with it, in words fit for a FailureReason), and tarfile's
`data` filter underneath as a second line (it also strips set-uid bits and ownership). Refused:
absolute paths, `..` components, links pointing outside the folder, devices and FIFOs, more
members than allowed, and more bytes than the cap (a tar bomb is stopped before it fills the
disk, since sizes are checked from the headers before the data is written).

Members are checked and extracted one at a time in a single pass over the (possibly gzip)
stream; on any refusal the caller discards the whole partial folder.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from polyhost.modeldata.errors import ArtifactError, quote_member
from polyhost.modeldata.local_files import open_regular

READ_SIZE = 64 * 1024
# Bytes of the uncompressed stream beyond the members' declared sizes: their headers (512 each,
# plus pax and long-name records), padding, and tarfile's read-ahead of one record.
STREAM_SLACK = 1024 * 1024
PER_MEMBER_SLACK = 2048
RATIO_FLOOR = 16 * 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _no_check() -> None:
    return None


@dataclass(frozen=True)
class ExtractLimits:
    max_bytes: int  # total size of the extracted files
    max_members: int
    max_ratio: int | None = None  # extracted size at most this multiple of the archive's size
    check: Callable[[], None] = _no_check  # raises once the fetch's time is up or it is cancelled
    # Called with the archive's descriptor once it is open: raises when the file opened is not
    # one the source may serve (a local archive re-linked since it was hashed).
    opened: Callable[[int], None] | None = None


def _outside(relative: str) -> bool:
    """True when a normalised relative path climbs out of its root."""
    return relative == ".." or relative.startswith("../")


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def check_member(member: tarfile.TarInfo, dest: Path, label: str) -> None:
    """Raise ArtifactError when extracting `member` into `dest` would be unsafe."""
    name = member.name
    what = f"Model data {label} was refused: tar member {quote_member(name)}"
    if name.startswith(("/", "\\")) or posixpath.isabs(name) or os.path.isabs(name):
        raise ArtifactError(f"{what} has an absolute path.")
    if ".." in name.replace("\\", "/").split("/"):
        raise ArtifactError(f"{what} contains '..' (path traversal).")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise ArtifactError(f"{what} is a device or FIFO; a model may hold only files and folders.")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArtifactError(f"{what} has an unsupported type ({member.type!r}).")
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        link = member.linkname
        target_text = f"{kind} to {quote_member(link)}"
        if link.startswith(("/", "\\")) or posixpath.isabs(link) or os.path.isabs(link):
            raise ArtifactError(f"{what} is a {target_text}, an absolute path.")
        base = posixpath.dirname(name) if member.issym() else ""
        if _outside(posixpath.normpath(posixpath.join(base, link))):
            raise ArtifactError(f"{what} is a {target_text}, outside the model folder.")
    # Follow links already extracted: "a" -> "b" inside, then "a/../.." is caught above, but a
    # chain of individually harmless links is only visible on the real file system.
    root = os.path.realpath(dest)
    resolved = os.path.realpath(os.path.join(root, name))
    if not _inside(resolved, root):
        raise ArtifactError(f"{what} would be written outside the model folder (through a link).")
    if member.issym():
        target = os.path.realpath(os.path.join(os.path.dirname(resolved), member.linkname))
        if not _inside(target, root):
            raise ArtifactError(
                f"{what} is a symbolic link that resolves outside the model folder."
            )


class _GuardedStream:
    """The uncompressed archive as tarfile reads it, checked on every read.

    Each read checks the deadline and cancellation, so a long extraction stops between two
    reads of 64 KiB. It also caps the bytes read to what the members declared so far plus
    headers: tarfile reads a pax header or a skipped member through here too, and a stream of
    gigabytes that declares nothing (a header record claiming a huge pax size) is cut short."""

    def __init__(self, raw: Readable, check: Callable[[], None], label: str) -> None:
        self._raw = raw
        self._check = check
        self._label = label
        self.read_bytes = 0
        self.allowed = STREAM_SLACK

    def read(self, size: int = -1) -> bytes:
        self._check()
        if size is None or size < 0:
            size = READ_SIZE
        data = self._raw.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self.allowed:
            raise ArtifactError(
                f"Model data {self._label} was refused: its tar stream is larger than its members "
                "account for (a malformed or malicious archive)."
            )
        return data


def _decompressed(handle: BinaryIO) -> Readable:
    """The archive's uncompressed stream: gzip, bzip2 and xz are recognised by their magic."""
    magic = handle.read(6)
    handle.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(handle, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(handle, mode="rb")
    return handle


def _cap(limits: ExtractLimits, archive_size: int) -> tuple[int, bool]:
    """(largest extracted total, whether the ratio guard is what sets it).

    Below RATIO_FLOOR the ratio is not held against an archive: a small model with a file of
    zeros compresses a thousandfold without being a bomb, and a few MiB harm no disk."""
    if limits.max_ratio is None:
        return limits.max_bytes, False
    by_ratio = max(limits.max_ratio * max(archive_size, 1), RATIO_FLOOR)
    return (by_ratio, True) if by_ratio < limits.max_bytes else (limits.max_bytes, False)


def extract_archive(archive: Path, dest: Path, limits: ExtractLimits, label: str) -> None:
    """Extract the tar (gzip, bzip2, xz or plain: detected) at `archive` into `dest`.

    One pass over the stream (tarfile's stream mode), each member checked from its header
    before a byte of it is written: safety (`check_member`), the member count, the size cap,
    and the ratio guard — so a 3 MB archive declaring a 3 GiB member is refused at that
    member's header, not after the disk filled."""
    with open_regular(archive, label) as handle:
        if limits.opened is not None:
            limits.opened(handle.fileno())
        archive_size = os.fstat(handle.fileno()).st_size
        cap, by_ratio = _cap(limits, archive_size)
        try:
            stream = _GuardedStream(_decompressed(handle), limits.check, label)
            tar = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except (tarfile.TarError, EOFError, zlib.error, OSError, lzma.LZMAError) as error:
            raise ArtifactError(
                f"Model data {label} is not a valid tar archive (a model must be a .tar.gz or "
                f".tar file, or an s3 prefix ending in '/'): {error or type(error).__name__}"
            ) from None
        with tar:
            _extract_members(tar, stream, dest, limits, cap, by_ratio, archive_size, label)


def _extract_members(
    tar: tarfile.TarFile,
    stream: _GuardedStream,
    dest: Path,
    limits: ExtractLimits,
    cap: int,
    by_ratio: bool,
    archive_size: int,
    label: str,
) -> None:
    total = 0
    count = 0
    try:
        for member in tar:
            count += 1
            if count > limits.max_members:
                raise ArtifactError(
                    f"Model data {label} was refused: it has more than {limits.max_members} "
                    "members."
                )
            check_member(member, dest, label)
            if member.isreg():
                total += member.size
                if total > limits.max_bytes:
                    raise ArtifactError(
                        f"Model data {label} was refused: it extracts to more than the limit "
                        f"of {limits.max_bytes} bytes (reached at member "
                        f"{quote_member(member.name)})."
                    )
                if by_ratio and total > cap:
                    raise ArtifactError(
                        f"Model data {label} was refused: its {archive_size} bytes expand to "
                        f"more than {limits.max_ratio} times that (reached at member "
                        f"{quote_member(member.name)}, {total} bytes in all), which marks a "
                        "decompression bomb; if the model is genuine, raise --model-max-ratio."
                    )
            stream.allowed = STREAM_SLACK + total + _padding(count)
            tar.extract(member, dest, filter="data")
    except tarfile.FilterError as error:
        name = error.tarinfo.name if error.tarinfo is not None else "?"
        raise ArtifactError(
            f"Model data {label} was refused: tar member {quote_member(name)} is unsafe "
            f"({type(error).__name__})."
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as error:
        raise ArtifactError(
            f"Model data {label} is corrupt or truncated: {error or type(error).__name__}"
        ) from None
    except OSError as error:
        raise ArtifactError(
            f"Model data {label} could not be extracted: {error.strerror or error}"
        ) from None


def _padding(members: int) -> int:
    return PER_MEMBER_SLACK * (members + 1)


def make_read_only(root: Path) -> None:
    """Drop every write bit of the files below `root` (folders are done after the move)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o222)


def seal_folders(root: Path) -> None:
    """Make `root` and its sub-folders read-only, so replicas sharing it cannot change it."""
    for folder, dirs, _files in os.walk(root, topdown=False):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o555)
    with contextlib.suppress(OSError):
        os.chmod(root, 0o555)
