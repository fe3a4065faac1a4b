"""Archives for tests of extraction limits, built fast: a gzip file may hold many members, so
gigabytes of zeros are one compressed block of zeros repeated, not gigabytes compressed."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

BLOCK = 16 << 20  # zeros per gzip member


def zero_bomb(path: Path, size: int, name: str = "big.bin") -> Path:
    """A .tar.gz with one member of `size` zero bytes (`size` a multiple of 16 MiB): about a
    thousandth of `size` on disk."""
    assert size % BLOCK == 0
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    zeros = gzip.compress(bytes(BLOCK), compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size // BLOCK):
            out.write(zeros)
        out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))  # end of archive
    return path


def pax_bomb(path: Path, size: int) -> Path:
    """A .tar.gz whose first record is a pax header claiming `size` bytes of header data, which
    tarfile would read into memory whole."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = size
    with open(path, "wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.USTAR_FORMAT)))
        zeros = gzip.compress(bytes(BLOCK))
        for _ in range(size // BLOCK):
            out.write(zeros)
    return path
