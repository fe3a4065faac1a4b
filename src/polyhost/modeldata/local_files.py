"""Opening a local file that must be a regular file, without ever blocking on what it really is.

A `file://` model URL names any path the caller likes. A plain `open()` of a FIFO blocks until
someone writes to it (forever, holding a thread), and `/dev/zero` reads without end. So a model
file is opened with O_NONBLOCK (an open that cannot block on a FIFO) and checked with `fstat`
on the descriptor actually opened — not on the name, which could be swapped in between — before
a byte is read. Anything but a regular file is refused with words that say what it is.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from polyhost.modeldata.errors import ArtifactError

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def kind_of(mode: int) -> str:
    """What a file system object is, in words for a message."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def not_a_file(label: str, mode: int) -> ArtifactError:
    return ArtifactError(
        f"Model data {label} was refused: it is {kind_of(mode)}, not a regular file; a file:// "
        "model must be a .tar.gz or .tar file, or a folder."
    )


def open_regular(path: os.PathLike[str] | str, label: str) -> BinaryIO:
    """`path` opened for reading; ArtifactError unless it is a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        # A socket cannot be opened at all (ENXIO): say what it is rather than the errno text.
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise not_a_file(label, mode) from None
        raise ArtifactError(
            f"Failed to read model data from {label}: {error.strerror or error}"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_a_file(label, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
