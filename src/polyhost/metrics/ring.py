"""The recent past of one series at full resolution: a fixed ring of 10-second cells.

Slot n holds the interval [n * slot_s, (n + 1) * slot_s). Writing slot n moves the head there
and clears the slots skipped on the way, so the ring always holds exactly the `size` newest
slots and needs no timestamp per slot. Memory is fixed when the ring is made: four doubles
(count, sum, minimum, maximum) and one reference per slot, 40 bytes, 43 KB for 3 hours of
10-second slots; plus the encoded buckets of the slots that need them (`cell.stored_bytes`,
about 2 bytes a bucket: 100-300 bytes for a busy latency slot, at most about 6 KB).
"""

from __future__ import annotations

from array import array

from polyhost.metrics.catalog import Kind
from polyhost.metrics.cell import Cell, merge, stored_bytes


class Ring:
    __slots__ = ("_buckets", "_head", "_stats", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._stats = array("d", bytes(8 * 4 * size))
        self._buckets: list[bytes | None] = [None] * size
        self._head = -1  # the newest slot number written; -1 before the first write

    @property
    def head(self) -> int:
        return self._head

    @property
    def oldest(self) -> int:
        """The oldest slot number the ring still holds."""
        return self._head - self.size + 1

    def write(self, slot: int, cell: Cell, kind: Kind) -> bool:
        """Add `cell` to slot `slot`; False (and nothing kept) when it is older than the ring."""
        if cell.count <= 0:
            return True
        if self._head < 0:
            self._head = slot
        elif slot > self._head:
            self._clear(self._head + 1, slot)
            self._head = slot
        elif slot < self.oldest:
            return False
        existing = self.get(slot)
        if existing is not None:  # the same slot written twice: merge (rare)
            cell = merge([existing, cell], kind, with_buckets=kind is not Kind.BINARY)
        index = 4 * (slot % self.size)
        stats = self._stats
        stats[index] = cell.count
        stats[index + 1] = cell.total
        stats[index + 2] = cell.minimum
        stats[index + 3] = cell.maximum
        self._buckets[slot % self.size] = stored_bytes(cell, kind)
        return True

    def get(self, slot: int, with_buckets: bool = True) -> Cell | None:
        """The cell of slot `slot`, or None when it is empty or outside the ring."""
        if self._head < 0 or not self.oldest <= slot <= self._head:
            return None
        index = 4 * (slot % self.size)
        stats = self._stats
        count = int(stats[index])
        if count <= 0:
            return None
        encoded = self._buckets[slot % self.size] if with_buckets else None
        return Cell(count, stats[index + 1], stats[index + 2], stats[index + 3], None, encoded)

    def cells(self, first: int, stop: int, with_buckets: bool) -> list[tuple[int, Cell]]:
        """Every non-empty slot in [first, stop), oldest first."""
        if self._head < 0:
            return []
        out: list[tuple[int, Cell]] = []
        for slot in range(max(first, self.oldest), min(stop, self._head + 1)):
            cell = self.get(slot, with_buckets)
            if cell is not None:
                out.append((slot, cell))
        return out

    def empty_since(self, slot: int) -> bool:
        """True when nothing was written at or after `slot`."""
        return self._head < slot

    def _clear(self, first: int, last: int) -> None:
        """Empty slots first..last (inclusive) before the head moves onto them."""
        if last - first + 1 >= self.size:
            self._stats = array("d", bytes(8 * 4 * self.size))
            self._buckets = [None] * self.size
            return
        stats = self._stats
        for slot in range(first, last + 1):
            index = 4 * (slot % self.size)
            stats[index] = 0.0
            self._buckets[slot % self.size] = None
