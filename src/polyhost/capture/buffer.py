"""The bounded queue between the invocation path and the writer.

`put` runs on the event loop, once per sampled invocation: a size check and an append under an
uncontended lock. It never blocks and never grows past its bounds (records and bytes): what
does not fit, or is larger than one record may be, is refused, and the caller counts it as
dropped. `take` hands the writer everything at once.
"""

from __future__ import annotations

import threading

from polyhost.capture.record import Captured


class CaptureBuffer:
    def __init__(self, max_records: int, max_bytes: int, max_record_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._items: list[Captured] = []
        self._bytes = 0
        self._lock = threading.Lock()
        # Past these the writer is woken before its interval is up, so a burst is written
        # (and its memory given back) without waiting for the next flush.
        self._early_records = max(1, max_records // 4)
        self._early_bytes = max(1, max_bytes // 4)
        self.wake = threading.Event()

    def put(self, item: Captured) -> bool:
        """Queue `item`; False when it does not fit (the caller counts it as dropped)."""
        size = item.size
        if size > self.max_record_bytes:
            return False
        with self._lock:
            if len(self._items) >= self.max_records or self._bytes + size > self.max_bytes:
                return False
            self._items.append(item)
            self._bytes += size
            early = len(self._items) >= self._early_records or self._bytes >= self._early_bytes
        if early:
            self.wake.set()
        return True

    def filling(self) -> bool:
        """A quarter full or more: to be written now rather than at the next interval."""
        return len(self._items) >= self._early_records or self._bytes >= self._early_bytes

    def take(self) -> list[Captured]:
        """Everything queued, in order; the buffer is empty after."""
        with self._lock:
            items, self._items, self._bytes = self._items, [], 0
        return items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes
