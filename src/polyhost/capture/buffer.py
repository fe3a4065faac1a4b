"""The bounded queue between the invocation path and the writer.

`put` runs on the event loop, once per sampled invocation: a size check and an append under an
uncontended lock. It never blocks and never grows past its bounds (records and bytes): what
does not fit, or is larger than one record may be, is refused, and the caller counts it as
dropped. `take` hands the writer everything at once, with the targets its rows name.

A row is a tuple of bytes, strings and numbers (`record.Row`): the garbage collector stops
tracking such tuples, so a full buffer adds nothing to the collections the event loop pays for.
"""

from __future__ import annotations

import threading

from polyhost.capture.config import CaptureTarget
from polyhost.capture.record import Row


class CaptureBuffer:
    def __init__(self, max_records: int, max_bytes: int, max_record_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._items: list[Row] = []
        # The targets the queued rows name, by serial: taken with them, so a target replaced
        # by an update still reaches the writer with the rows taken under it.
        self._targets: dict[int, CaptureTarget] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        # Past these the writer is woken before its interval is up, so a burst is written
        # (and its memory given back) without waiting for the next flush.
        self.early_records = max(1, max_records // 4)
        self.early_bytes = max(1, max_bytes // 4)
        self.wake = threading.Event()

    def put(self, target: CaptureTarget, item: Row, size: int) -> bool:
        """Queue `item` (`size`: its bodies' bytes); False when it does not fit (the caller
        counts it as dropped)."""
        if size > self.max_record_bytes:
            return False
        with self._lock:
            items = self._items
            if len(items) >= self.max_records or self._bytes + size > self.max_bytes:
                return False
            items.append(item)
            self._targets[target.serial] = target
            self._bytes += size
            early = len(items) >= self.early_records or self._bytes >= self.early_bytes
        if early and not self.wake.is_set():
            self.wake.set()
        return True

    def filling(self) -> bool:
        """A quarter full or more: to be written now rather than at the next interval."""
        return len(self._items) >= self.early_records or self._bytes >= self.early_bytes

    def take(self) -> tuple[list[Row], dict[int, CaptureTarget], int]:
        """Everything queued, in order, the targets it names and its bodies' bytes; the
        buffer is empty after."""
        with self._lock:
            items, targets, size = self._items, self._targets, self._bytes
            self._items, self._targets, self._bytes = [], {}, 0
        return items, targets, size

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes
