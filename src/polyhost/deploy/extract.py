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

import contextlib
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from polyhost.deploy.artifact_errors import ArtifactError, quote_member


@dataclass(frozen=True)
class ExtractLimits:
    max_bytes: int  # total size of the extracted files
    max_members: int


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


def extract_archive(archive: Path, dest: Path, limits: ExtractLimits, label: str) -> None:
    """Extract the tar (gzip, bzip2, xz or plain: detected) at `archive` into `dest`."""
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ArtifactError(
            f"Model data {label} is not a valid tar archive (a model must be a .tar.gz or .tar "
            f"file, or an s3 prefix ending in '/'): {error}"
        ) from None
    except OSError as error:
        raise ArtifactError(f"Model data {label} could not be read: {error.strerror}") from None
    total = 0
    count = 0
    with tar:
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
