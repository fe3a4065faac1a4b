"""Roll-ups on disk: SQLite in WAL mode under the state dir (`metrics.db`).

One row per series, resolution and window: count, sum, minimum, maximum and the encoded
buckets where the metric's kind needs them (`cell.stored_bytes`). Three resolutions, as
CloudWatch keeps: 1 minute, 5 minutes and 1 hour. A flush writes the minute rows and merges
the same minutes into their 5-minute and hour rows, in one transaction, so a coarse row is
always the merge of the minute rows under it, whatever stops the server when (a kill -9 loses
the minute in progress, never consistency). Coarse rows let a query over a day read 288 or 24
rows per series instead of 1,440: the period of a dashboard is usually 5 minutes or an hour.

The primary key (series, resolution, start) makes the table its own index (`WITHOUT ROWID`):
a series' windows are one B-tree walk, retention one range delete per series and resolution.
`synchronous=NORMAL` is enough for a cache of statistics (a power cut may lose the last
minute, never corrupt). One connection behind a lock serves the recorder's flush and the
readers: writes come once a minute and take milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhost.metrics.catalog import Kind
from polyhost.metrics.cell import Cell, merge, stored_bytes
from polyhost.metrics.query import Dimensions, MetricId

SCHEMA_VERSION = 2
RESOLUTIONS = (1, 5, 60)  # minutes
_IN_CHUNK = 500  # window starts per `IN (...)`

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id         INTEGER PRIMARY KEY,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    unit       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    last_seen  REAL NOT NULL,
    UNIQUE (namespace, name, dimensions)
);
CREATE TABLE IF NOT EXISTS rollups (
    series_id  INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    start      INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    total      REAL NOT NULL,
    minimum    REAL NOT NULL,
    maximum    REAL NOT NULL,
    buckets    BLOB,
    PRIMARY KEY (series_id, resolution, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredSeries:
    id: int
    metric: MetricId
    unit: str
    kind: Kind
    last_seen: float


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One series' minute, to be written and merged into its 5-minute and hour windows."""

    series_id: int
    minute: int  # epoch seconds // 60
    cell: Cell
    kind: Kind


def _dimensions_text(dimensions: Dimensions) -> str:
    return json.dumps([list(pair) for pair in dimensions], separators=(",", ":"))


def _dimensions_of(text: str) -> Dimensions:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


class RollupStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(
                f"{path} holds metrics of schema {row[0]}; this polyhost reads schema "
                f"{SCHEMA_VERSION}. Move the file away to start a new history."
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- series ---------------------------------------------------------------------------------
    def load_series(self) -> list[StoredSeries]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, namespace, name, dimensions, unit, kind, last_seen FROM series"
            ).fetchall()
        return [
            StoredSeries(
                id=row[0],
                metric=MetricId(row[1], row[2], _dimensions_of(row[3])),
                unit=row[4],
                kind=Kind(row[5]),
                last_seen=row[6],
            )
            for row in rows
        ]

    def add_series(self, metric: MetricId, unit: str, kind: Kind, last_seen: float) -> int:
        """The id of `metric`, created if it is new."""
        with self._lock:
            dims = _dimensions_text(metric.dimensions)
            self._db.execute(
                "INSERT OR IGNORE INTO series (namespace, name, dimensions, unit, kind, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (metric.namespace, metric.name, dims, unit, kind.value, last_seen),
            )
            row = self._db.execute(
                "SELECT id FROM series WHERE namespace = ? AND name = ? AND dimensions = ?",
                (metric.namespace, metric.name, dims),
            ).fetchone()
        return int(row[0])

    # -- writing --------------------------------------------------------------------------------
    def write(
        self,
        rows: Sequence[RollupRow],
        last_seen: Iterable[tuple[int, float]],
        forget: Sequence[int] = (),
    ) -> None:
        """One transaction: the minutes, merged into their coarser windows too (and into rows
        already there: a restart splits a minute, a flush adds to the hour in progress), the
        series' last-seen times, and series to drop with all their rows."""
        coarse: dict[tuple[int, int, int], tuple[Kind, list[Cell]]] = {}
        for row in rows:
            for resolution in RESOLUTIONS[1:]:
                key = (row.series_id, resolution, row.minute // resolution * resolution)
                coarse.setdefault(key, (row.kind, []))[1].append(row.cell)
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for row in rows:
                    self._upsert(row.series_id, 1, row.minute, row.cell, row.kind)
                for (series_id, resolution, start), (kind, cells) in coarse.items():
                    cell = merge(cells, kind, with_buckets=kind is not Kind.BINARY)
                    self._upsert(series_id, resolution, start, cell, kind)
                db.executemany(
                    "UPDATE series SET last_seen = max(last_seen, ?) WHERE id = ?",
                    [(seen, series_id) for series_id, seen in last_seen],
                )
                for series_id in forget:
                    db.execute("DELETE FROM rollups WHERE series_id = ?", (series_id,))
                    db.execute("DELETE FROM series WHERE id = ?", (series_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _upsert(self, series_id: int, resolution: int, start: int, cell: Cell, kind: Kind) -> None:
        key = (series_id, resolution, start)

        def encode(cell: Cell) -> bytes | None:
            # Coarse windows keep running counts: what dashboards read, answered in place.
            return stored_bytes(cell, kind, running=resolution > 1)

        cursor = self._db.execute(
            "INSERT OR IGNORE INTO rollups"
            " (series_id, resolution, start, count, total, minimum, maximum, buckets)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, cell.count, cell.total, cell.minimum, cell.maximum, encode(cell)),
        )
        if cursor.rowcount == 1:
            return
        old = self._db.execute(
            "SELECT count, total, minimum, maximum, buckets FROM rollups"
            " WHERE series_id = ? AND resolution = ? AND start = ?",
            key,
        ).fetchone()
        merged = merge([_cell(old), cell], kind, with_buckets=kind is not Kind.BINARY)
        self._db.execute(
            "UPDATE rollups SET count = ?, total = ?, minimum = ?, maximum = ?, buckets = ?"
            " WHERE series_id = ? AND resolution = ? AND start = ?",
            (
                merged.count, merged.total, merged.minimum, merged.maximum, encode(merged),
                *key,
            ),
        )  # fmt: skip

    def expire(self, series_ids: Iterable[int], before_minute: int, stale_before: float) -> None:
        """Retention: drop windows that start before `before_minute`, and series last seen
        before `stale_before` with all their rows."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "DELETE FROM rollups WHERE series_id = ? AND resolution = ? AND start < ?",
                    [(s, r, before_minute) for s in series_ids for r in RESOLUTIONS],
                )
                stale = [
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM series WHERE last_seen < ?", (stale_before,)
                    ).fetchall()
                ]
                for series_id in stale:
                    db.execute("DELETE FROM rollups WHERE series_id = ?", (series_id,))
                    db.execute("DELETE FROM series WHERE id = ?", (series_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- reading --------------------------------------------------------------------------------
    def cells(
        self, series_id: int, resolution: int, starts: Sequence[int], with_buckets: bool
    ) -> list[tuple[int, Cell]]:
        """The windows of `resolution` (minutes) starting at `starts` (epoch minutes, ascending)
        that have data; buckets left encoded, and only read at all when asked for."""
        columns = "start, count, total, minimum, maximum" + (", buckets" if with_buckets else "")
        out: list[tuple[int, Cell]] = []
        with self._lock:
            for where, params in _selections(series_id, resolution, starts):
                for row in self._db.execute(f"SELECT {columns} FROM rollups WHERE {where}", params):
                    encoded = row[5] if with_buckets else None
                    out.append((row[0], Cell(row[1], row[2], row[3], row[4], None, encoded)))
        return out

    def period_sums(
        self, series_id: int, resolution: int, starts: Sequence[int], base: int, period_s: int
    ) -> list[tuple[int, Cell]]:
        """The same windows summed per period by SQLite itself (period index counted from
        `base`, epoch seconds): everything a statistic but a percentile needs."""
        out: list[tuple[int, Cell]] = []
        with self._lock:
            for where, params in _selections(series_id, resolution, starts):
                rows = self._db.execute(
                    "SELECT (start * 60 - ?) / ? AS period, sum(count), sum(total), min(minimum),"
                    f" max(maximum) FROM rollups WHERE {where} GROUP BY period",
                    (base, period_s, *params),
                ).fetchall()
                out += [(int(r[0]), Cell(int(r[1]), r[2], r[3], r[4])) for r in rows]
        return out


def _selections(
    series_id: int, resolution: int, starts: Sequence[int]
) -> Iterable[tuple[str, tuple[int, ...]]]:
    """WHERE clauses for exactly these windows: one range when they are every window from
    the first to the last (the usual case), else `IN` lists of bounded size."""
    if not starts:
        return
    first, last = starts[0], starts[-1]
    prefix = "series_id = ? AND resolution = ? AND "
    if last - first == (len(starts) - 1) * resolution:
        yield prefix + "start BETWEEN ? AND ?", (series_id, resolution, first, last)
        return
    for offset in range(0, len(starts), _IN_CHUNK):
        chunk = tuple(starts[offset : offset + _IN_CHUNK])
        yield prefix + f"start IN ({','.join('?' * len(chunk))})", (series_id, resolution, *chunk)


def _cell(row: Sequence[Any]) -> Cell:
    count, total, minimum, maximum, buckets = row
    return Cell(int(count), float(total), float(minimum), float(maximum), None,
                None if buckets is None else bytes(buckets))  # fmt: skip
