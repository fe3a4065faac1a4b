"""One-minute roll-ups on disk: SQLite in WAL mode under the state dir (`metrics.db`).

One row per series and minute: count, sum, minimum, maximum and the encoded buckets where the
metric's kind needs them (`cell.stored_buckets`). The primary key (series, minute) makes the
table its own index (`WITHOUT ROWID`), so a series' range is one B-tree walk and retention is
one range delete per series. All writes of a minute go in one transaction; `synchronous=NORMAL`
is enough for a cache of statistics (a power cut may lose the last minute, never corrupt).

One connection behind a lock serves the recorder's flush and the readers' queries alike:
writes come once a minute and take milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhost.metrics import sketch
from polyhost.metrics.catalog import Kind
from polyhost.metrics.cell import Cell, merge, stored_buckets
from polyhost.metrics.query import Dimensions, MetricId

SCHEMA_VERSION = 1

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
    series_id INTEGER NOT NULL,
    minute    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    total     REAL NOT NULL,
    minimum   REAL NOT NULL,
    maximum   REAL NOT NULL,
    buckets   BLOB,
    PRIMARY KEY (series_id, minute)
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
        """One transaction: the minute's rows (merged into a row already there, which happens
        for the minute a restart split), the series' last-seen times, and series to drop."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for row in rows:
                    self._upsert(row)
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

    def _upsert(self, row: RollupRow) -> None:
        cell = row.cell
        buckets = stored_buckets(cell, row.kind)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO rollups"
            " (series_id, minute, count, total, minimum, maximum, buckets)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row.series_id, row.minute, cell.count, cell.total, cell.minimum, cell.maximum,
                None if buckets is None else sketch.encode(buckets),
            ),
        )  # fmt: skip
        if cursor.rowcount == 1:
            return
        old = self._db.execute(
            "SELECT count, total, minimum, maximum, buckets FROM rollups"
            " WHERE series_id = ? AND minute = ?",
            (row.series_id, row.minute),
        ).fetchone()
        merged = merge([_cell(old), cell], row.kind, with_buckets=row.kind is not Kind.BINARY)
        buckets = stored_buckets(merged, row.kind)
        self._db.execute(
            "UPDATE rollups SET count = ?, total = ?, minimum = ?, maximum = ?, buckets = ?"
            " WHERE series_id = ? AND minute = ?",
            (
                merged.count, merged.total, merged.minimum, merged.maximum,
                None if buckets is None else sketch.encode(buckets), row.series_id, row.minute,
            ),
        )  # fmt: skip

    def expire(self, series_ids: Iterable[int], before_minute: int, stale_before: float) -> None:
        """Retention: drop rows older than `before_minute`, and series last seen before
        `stale_before` with all their rows."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "DELETE FROM rollups WHERE series_id = ? AND minute < ?",
                    [(series_id, before_minute) for series_id in series_ids],
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
    def sums(
        self, series_id: int, first_minute: int, stop_minute: int, start: int, period_s: int
    ) -> list[tuple[int, Cell]]:
        """Per period (index counted from `start`, epoch seconds): count, sum, minimum and
        maximum, summed by SQLite itself: what every statistic but percentiles needs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT (minute * 60 - ?) / ? AS period, sum(count), sum(total), min(minimum),"
                " max(maximum) FROM rollups WHERE series_id = ? AND minute >= ? AND minute < ?"
                " GROUP BY period",
                (start, period_s, series_id, first_minute, stop_minute),
            ).fetchall()
        return [(int(r[0]), Cell(int(r[1]), float(r[2]), float(r[3]), float(r[4]))) for r in rows]

    def cells(self, series_id: int, first_minute: int, stop_minute: int) -> list[tuple[int, Cell]]:
        """Every minute in the range with its buckets (for percentiles), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT minute, count, total, minimum, maximum, buckets FROM rollups"
                " WHERE series_id = ? AND minute >= ? AND minute < ? ORDER BY minute",
                (series_id, first_minute, stop_minute),
            ).fetchall()
        return [(int(r[0]), _cell(r[1:])) for r in rows]


def _cell(row: Sequence[Any]) -> Cell:
    count, total, minimum, maximum, buckets = row
    return Cell(
        int(count),
        float(total),
        float(minimum),
        float(maximum),
        None if buckets is None else sketch.decode(bytes(buckets)),
    )
