"""Metric history: the last 3 hours at 10-second resolution in memory, roll-ups of 1 minute,
5 minutes and 1 hour for 15 days on disk, and the answers `MetricsReader` promises
(`metrics/query.py`).

Writing. The recorder (`metrics/recorder.py`) hands over one `Cell` per series every 10 s
(`record`, on the event loop). Once a minute it calls `flush` (in a worker thread): every
series' slots of the minutes completed since the last flush are merged into minute roll-ups,
and those into their 5-minute and hour roll-ups, in one transaction (`metrics/rollups.py`).
`flush` at shutdown writes the minute in progress too; the rest of that minute, recorded after
a restart, is merged into the same rows.

Reading. A period that is a multiple of 60 s reads the roll-ups for what is on disk and the
memory for the rest (from `flushed`, the first slot not yet on disk), so a restart loses
nothing but the 10-second detail. Each period is tiled with the coarsest roll-ups that fit
(`_plan`): a dashboard asking 5-minute periods from the hour reads one row per period. A
shorter period (10, 20, 30 s) reads the memory alone, as CloudWatch keeps sub-minute data for
3 hours only. Readers run in worker threads: one lock guards the index and the rings, held
only while slots are copied out, and a reader never runs during a flush (which moves data from
memory to disk).

Bounds, whatever the traffic (traffic changes counts, never the number of series):
- Series: at most `max_series` (2,000) are known at once, on disk and in memory. A new series
  past the cap takes the place of the one seen longest ago, if that one is idle for more than
  3 hours (an endpoint deleted since, say); otherwise it is not recorded, and a warning says so.
  A series idle for 3 hours loses its ring; one idle for 15 days is forgotten with its rows.
- Memory per live series: a ring of 1,080 slots, 43 KB fixed (`metrics/ring.py`), plus the
  encoded buckets of the slots that need them: about 2 bytes per bucket, 100-300 bytes for a
  latency slot of a busy container, at most about 6 KB (1,024 buckets). 15 containers with one
  replica make 167 series (11 per container, 2 per variant); after 3 hours at 20 requests/s
  each they hold 15 MiB (bench/RESULTS.md), 7.2 MB of it the rings. The worst case, every
  latency slot of all 31 latency series at 1,024 buckets, adds 200 MB: it takes a thousand
  requests per container every 10 s with latencies spread over nine decades. At the cap:
  86 MB of rings plus buckets.
- Disk per series: at most 26,280 rows (15 days of minutes, 5-minute and hour windows), each
  about 40 bytes plus 2 bytes per bucket (none for BINARY and steady series). 15 containers at
  20 requests/s each write 32 MiB a day, 480 MiB for the 15 days kept. Rows older than 15 days
  are deleted every hour.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from polyhost.metrics import sketch
from polyhost.metrics.catalog import Kind, MetricDef
from polyhost.metrics.cell import Cell, merge, percentiles
from polyhost.metrics.query import Datapoint, MetricId
from polyhost.metrics.ring import Ring
from polyhost.metrics.rollups import RollupRow, RollupStore

log = logging.getLogger("polyhost.metrics")

SLOT_S = 10
MEMORY_S = 3 * 3600
RETENTION_S = 15 * 86400
MAX_SERIES = 2000
EXPIRY_EVERY_S = 3600
DB_NAME = "metrics.db"


@dataclass(slots=True)
class _Series:
    metric: MetricId
    unit: str
    kind: Kind
    last_seen: float
    ring: Ring | None = None
    db_id: int | None = None


class MetricsHistory:
    """Implements `MetricsReader`; `record`/`flush`/`expire` are the recorder's side."""

    def __init__(
        self,
        store: RollupStore | None = None,
        *,
        slot_s: int = SLOT_S,
        memory_s: int = MEMORY_S,
        retention_s: int = RETENTION_S,
        max_series: int = MAX_SERIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if memory_s % slot_s or 60 % slot_s:
            raise ValueError("slot_s must divide 60 and memory_s")
        self.slot_s = slot_s
        self.memory_s = memory_s
        self.retention_s = retention_s
        self.max_series = max_series
        self.dropped_series = 0
        self._clock = clock
        self._store = store
        self._ring_size = memory_s // slot_s
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._series: dict[MetricId, _Series] = {}
        self._forget: list[int] = []
        # Slots from `_flushed` on are in memory only; everything before is on disk. It starts
        # at the slot this run began in, and moves back for a slot recorded before it that no
        # flush of this run has passed (`_flushed_floor`).
        self._flushed = int(clock() // slot_s)
        self._flushed_floor = 0
        self._next_expiry = 0.0
        if store is not None:
            for stored in store.load_series():
                self._series[stored.metric] = _Series(
                    stored.metric, stored.unit, stored.kind, stored.last_seen, db_id=stored.id
                )

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        slot_s: int = SLOT_S,
        memory_s: int = MEMORY_S,
        retention_s: int = RETENTION_S,
        max_series: int = MAX_SERIES,
        clock: Callable[[], float] = time.time,
    ) -> MetricsHistory:
        """The history kept in `state_dir/metrics.db`, with what a previous run left there."""
        return cls(
            RollupStore(state_dir / DB_NAME),
            slot_s=slot_s,
            memory_s=memory_s,
            retention_s=retention_s,
            max_series=max_series,
            clock=clock,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- the recorder's side ---------------------------------------------------------------------
    def record(
        self, interval_start: float, cells: Iterable[tuple[MetricId, MetricDef, Cell]]
    ) -> None:
        """One interval's cells (event loop). Series past the cap are dropped with a warning."""
        slot = int(interval_start // self.slot_s)
        seen = (slot + 1) * self.slot_s
        dropped: list[MetricId] = []
        with self._lock:
            for metric, definition, cell in cells:
                series = self._series.get(metric) or self._admit(metric, definition, seen)
                if series is None:
                    dropped.append(metric)
                    continue
                if series.ring is None:
                    series.ring = Ring(self._ring_size)
                if series.ring.write(slot, cell, series.kind) and slot < self._flushed:
                    self._flushed = max(slot, self._flushed_floor)
                series.last_seen = max(series.last_seen, seen)
        if dropped:
            self.dropped_series += len(dropped)
            log.warning(
                "metric history is full (%d series, the most it keeps); not recording %d new "
                "series, e.g. %s %s",
                self.max_series,
                len(dropped),
                dropped[0].name,
                dict(dropped[0].dimensions),
            )

    def _admit(self, metric: MetricId, definition: MetricDef, now: float) -> _Series | None:
        if len(self._series) >= self.max_series:
            stalest = min(self._series.values(), key=lambda s: s.last_seen)
            if stalest.last_seen >= now - self.memory_s:
                return None  # every series is live: never drop recent data for a new one
            del self._series[stalest.metric]
            if stalest.db_id is not None:
                self._forget.append(stalest.db_id)
        series = _Series(metric, definition.unit, definition.kind, now)
        self._series[metric] = series
        return series

    def flush(self, until: float) -> int:
        """Write the roll-ups of every slot before `until` not yet on disk; rows written.

        Call it from one thread at a time (the recorder does, once a minute and at shutdown).
        """
        store = self._store
        stop = math.ceil(until / self.slot_s)
        with self._flush_lock:
            with self._lock:
                first = self._flushed
                if stop <= first:
                    return 0
                work: list[tuple[_Series, dict[int, list[Cell]]]] = []
                for series in self._series.values():
                    ring = series.ring
                    if ring is None or ring.empty_since(first):
                        continue
                    minutes: dict[int, list[Cell]] = {}
                    for slot, cell in ring.cells(first, stop, with_buckets=True):
                        minutes.setdefault(slot * self.slot_s // 60, []).append(cell)
                    if minutes:
                        work.append((series, minutes))
                forget, self._forget = self._forget, []
            if store is not None:
                try:
                    rows = self._rows(store, work)
                    store.write(rows, [(s.db_id, s.last_seen) for s, _ in work if s.db_id], forget)
                except Exception:
                    with self._lock:
                        self._forget.extend(forget)
                    raise
            else:
                rows = []
            with self._lock:
                self._flushed = max(self._flushed, stop)
                self._flushed_floor = stop
            return len(rows)

    def _rows(
        self, store: RollupStore, work: list[tuple[_Series, dict[int, list[Cell]]]]
    ) -> list[RollupRow]:
        rows: list[RollupRow] = []
        for series, minutes in work:
            if series.db_id is None:
                series.db_id = store.add_series(
                    series.metric, series.unit, series.kind, series.last_seen
                )
            with_buckets = series.kind is not Kind.BINARY
            for minute, cells in minutes.items():
                rows.append(
                    RollupRow(
                        series.db_id, minute, merge(cells, series.kind, with_buckets), series.kind
                    )
                )
        return rows

    def expire(self, now: float) -> None:
        """Drop the rings of series idle for 3 hours; hourly, delete what is past retention."""
        with self._lock:
            for series in self._series.values():
                if series.ring is not None and series.last_seen < now - self.memory_s:
                    series.ring = None
            due = now >= self._next_expiry
            if due:
                self._next_expiry = now + EXPIRY_EVERY_S
                cutoff = now - self.retention_s
                stale = [s for s in self._series.values() if s.last_seen < cutoff]
                for series in stale:
                    del self._series[series.metric]
                ids = [s.db_id for s in self._series.values() if s.db_id is not None]
        if due and self._store is not None:
            self._store.expire(ids, int(cutoff // 60), cutoff)

    # -- MetricsReader -------------------------------------------------------------------------
    def list_metrics(self) -> Sequence[tuple[MetricId, float]]:
        with self._lock:
            return [(s.metric, s.last_seen) for s in self._series.values()]

    def unit_of(self, metric: MetricId) -> str | None:
        with self._lock:
            series = self._series.get(metric)
            return None if series is None else series.unit

    def statistics(
        self,
        metric: MetricId,
        start: float,
        end: float,
        period_s: int,
        percentiles: Sequence[float] = (),
    ) -> list[Datapoint]:
        if period_s <= 0 or end <= start:
            return []
        with self._flush_lock:  # a flush moves data from memory to disk: read either side of it
            return self._statistics(metric, start, end, period_s, percentiles)

    def _statistics(
        self,
        metric: MetricId,
        start: float,
        end: float,
        period_s: int,
        percents: Sequence[float],
    ) -> list[Datapoint]:
        with_buckets = bool(percents)
        from_disk = period_s % 60 == 0 and self._store is not None
        if from_disk:
            start = math.floor(start / 60) * 60  # periods of whole minutes start on one
        with self._lock:
            series = self._series.get(metric)
            if series is None:
                return []
            kind, unit, db_id = series.kind, series.unit, series.db_id
            flushed = self._flushed * self.slot_s
            memory_from = max(start, flushed) if from_disk else start
            first_slot = math.ceil(memory_from / self.slot_s)
            stop_slot = math.ceil(end / self.slot_s)
            recent = (
                []
                if series.ring is None
                else series.ring.cells(first_slot, stop_slot, with_buckets)
            )
        # period index -> its one cell, or the list of them when several fall in it
        periods: dict[int, Cell | list[Cell]] = {}

        def add(index: int, cell: Cell) -> None:
            found = periods.get(index)
            if found is None:
                periods[index] = cell
            elif isinstance(found, list):
                found.append(cell)
            else:
                periods[index] = [found, cell]

        for slot, cell in recent:
            add(int((slot * self.slot_s - start) // period_s), cell)
        if from_disk and db_id is not None and start <= flushed and self._store is not None:
            oldest = self._clock() - self.retention_s - 3600
            plan = _plan(int(start), end, period_s, flushed, oldest)
            store = self._store
            for resolution, starts in plan.items():
                if not starts:
                    continue
                if with_buckets or resolution * 60 == period_s:  # one window, one period
                    for minute, cell in store.cells(db_id, resolution, starts, with_buckets):
                        add(int((minute * 60 - start) // period_s), cell)
                else:
                    sums = store.period_sums(db_id, resolution, starts, int(start), period_s)
                    for index, cell in sums:
                        add(index, cell)
        points: list[Datapoint] = []
        for index in sorted(periods):
            found = periods[index]
            cell = merge(found, kind, with_buckets) if isinstance(found, list) else found
            if cell.count <= 0:
                continue
            shown: dict[float, float] = {}
            if percents:
                encoded = cell.encoded
                if encoded is not None and cell.buckets is None:  # one stored cell: in place
                    values = sketch.percentiles_encoded(
                        encoded, percents, cell.minimum, cell.maximum
                    )
                    shown = dict(zip(percents, values, strict=True))
                else:
                    shown = percentiles(cell, kind, percents)
            points.append(
                Datapoint(
                    timestamp=start + index * period_s,
                    sample_count=float(cell.count),
                    sum=cell.total,
                    minimum=cell.minimum,
                    maximum=cell.maximum,
                    unit=unit,
                    percentiles=shown,
                )
            )
        return points


_WINDOWS_S = (3600, 300, 60)


def _plan(
    start: int, end: float, period_s: int, disk_until: int, oldest: float
) -> dict[int, list[int]]:
    """Which roll-ups to read: per resolution (minutes), the window starts (epoch minutes).

    Every period [t, t + period) up to `end` is tiled with the coarsest windows that both the
    periods and their start allow (an hour, 5 minutes or a minute), so an aligned dashboard
    query reads one row per period; the last period, cut by `end`, with finer ones where it
    must. Only windows starting no later than `disk_until` can have data on disk (the memory
    has the rest), and none before `oldest`.
    """
    plan: dict[int, list[int]] = {60: [], 5: [], 1: []}
    limit = math.ceil(end / 60) * 60
    t = start
    if t < oldest:  # skip periods that retention has emptied, without walking them
        t += math.ceil((oldest - t) / period_s) * period_s
    if t >= limit or t > disk_until:
        return plan
    full = t + (limit - t) // period_s * period_s  # where the whole periods end
    widest = next(w for w in _WINDOWS_S if period_s % w == 0)
    if t % widest == 0:  # aligned: every period is whole windows of the widest kind
        last = min(full, disk_until + 1)
        if last > t:
            plan[widest // 60].extend(range(t // 60, math.ceil(last / 60), widest // 60))
    else:  # each period tiled on its own: minutes at its edges, coarser windows inside
        for first in range(t, min(full, disk_until + 1), period_s):
            _tile(plan, first, first + period_s, disk_until)
    _tile(plan, full, limit, disk_until)
    return plan


def _tile(plan: dict[int, list[int]], start: int, stop: int, disk_until: int) -> None:
    """Windows covering [start, stop) with the largest ones that fit, up to `disk_until`."""
    x = start
    while x < stop and x <= disk_until:
        window = next(w for w in _WINDOWS_S if x % w == 0 and x + w <= stop)
        plan[window // 60].append(x // 60)
        x += window
