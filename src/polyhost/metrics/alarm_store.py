"""The metric alarms and their history: one SQLite file in the state dir (`alarms.db`).

An alarm is one row: its definition as PutMetricAlarm gave it (JSON, the request's members
after validation, so a restart rebuilds exactly the alarm that was put) and its state (value,
reason, reason data, when it last changed). History items are rows of their own, kept
`KEEP_HISTORY_S` (two weeks, as CloudWatch keeps alarm history) and pruned at every write.

Every call is a short transaction under one lock; the callers run it in worker threads (the
CloudWatch route's thread, the evaluator's), never on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "alarms.db"
KEEP_HISTORY_S = 14 * 86_400.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    configured REAL NOT NULL,
    actions_enabled INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    reason_data TEXT,
    state_updated REAL NOT NULL,
    state_transitioned REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_alarm ON history (name, at);
CREATE INDEX IF NOT EXISTS history_by_time ON history (at);
"""


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    name: str
    definition: dict[str, Any]  # PutMetricAlarm's members, validated
    configured: float  # AlarmConfigurationUpdatedTimestamp
    actions_enabled: bool
    state: str
    reason: str
    reason_data: str | None
    state_updated: float  # StateUpdatedTimestamp: the state or its reason last changed
    state_transitioned: float  # StateTransitionedTimestamp: the state value last changed


@dataclass(frozen=True, slots=True)
class HistoryItem:
    seq: int
    name: str
    at: float
    kind: str  # ConfigurationUpdate, StateUpdate, Action
    summary: str
    data: str  # JSON text


class AlarmStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @classmethod
    def open(cls, state_dir: Path) -> AlarmStore:
        return cls(state_dir / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- alarms ----------------------------------------------------------------------------------
    def all(self) -> list[StoredAlarm]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM alarms ORDER BY name").fetchall()
        return [_alarm(row) for row in rows]

    def get(self, name: str) -> StoredAlarm | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alarms WHERE name = ?", (name,)).fetchone()
        return None if row is None else _alarm(row)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM alarms").fetchone()[0])

    def put(self, alarm: StoredAlarm, history: HistoryItem) -> None:
        """Create or replace `alarm`, with its ConfigurationUpdate history item."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alarm.name,
                    json.dumps(alarm.definition, separators=(",", ":")),
                    alarm.configured,
                    int(alarm.actions_enabled),
                    alarm.state,
                    alarm.reason,
                    alarm.reason_data,
                    alarm.state_updated,
                    alarm.state_transitioned,
                ),
            )
            self._add_history(history)

    def set_state(
        self,
        name: str,
        state: str,
        reason: str,
        reason_data: str | None,
        at: float,
        history: HistoryItem | None,
    ) -> bool:
        """Store a new state (and its history item); False when the alarm is gone."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            cursor = self._db.execute(
                "UPDATE alarms SET state_transitioned = CASE WHEN state = ? THEN "
                "state_transitioned ELSE ? END, state = ?, reason = ?, reason_data = ?, "
                "state_updated = ? WHERE name = ?",
                (state, at, state, reason, reason_data, at, name),
            )
            if cursor.rowcount == 0:
                return False
            if history is not None:
                self._add_history(history)
            return True

    def set_actions_enabled(self, names: Iterable[str], enabled: bool, at: float) -> list[str]:
        """Turn actions on or off for the alarms named; the names that exist."""
        changed: list[str] = []
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for name in names:
                cursor = self._db.execute(
                    "UPDATE alarms SET actions_enabled = ? WHERE name = ?", (int(enabled), name)
                )
                if cursor.rowcount:
                    changed.append(name)
        return changed

    def delete(self, names: Iterable[str]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for name in names:
                self._db.execute("DELETE FROM alarms WHERE name = ?", (name,))

    # -- history ---------------------------------------------------------------------------------
    def add_history(self, item: HistoryItem) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._add_history(item)

    def _add_history(self, item: HistoryItem) -> None:
        self._db.execute(
            "INSERT INTO history (name, at, kind, summary, data) VALUES (?, ?, ?, ?, ?)",
            (item.name, item.at, item.kind, item.summary, item.data),
        )
        self._db.execute("DELETE FROM history WHERE at < ?", (item.at - KEEP_HISTORY_S,))

    def history(
        self,
        name: str | None,
        kind: str | None,
        start: float | None,
        end: float | None,
        ascending: bool,
    ) -> list[HistoryItem]:
        clauses: list[str] = []
        args: list[Any] = []
        for clause, value in (
            ("name = ?", name),
            ("kind = ?", kind),
            ("at >= ?", start),
            ("at <= ?", end),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if ascending else "DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, name, at, kind, summary, data FROM history {where} "
                f"ORDER BY at {order}, seq {order}",
                args,
            ).fetchall()
        return [HistoryItem(*row) for row in rows]


def _alarm(row: tuple[Any, ...]) -> StoredAlarm:
    name, definition, configured, enabled, state, reason, data, updated, transitioned = row
    return StoredAlarm(
        name=name,
        definition=json.loads(definition),
        configured=configured,
        actions_enabled=bool(enabled),
        state=state,
        reason=reason,
        reason_data=data,
        state_updated=updated,
        state_transitioned=transitioned,
    )
