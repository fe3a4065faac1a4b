"""Scalable targets, scaling policies, scheduled actions and scaling activities: one SQLite
file in the state dir (`autoscaling.db`), so a restart keeps every one of them.

Each row is a JSON document (what Describe shows, plus a few private members starting with
`_`: cooldown times, a schedule's next run) beside the columns it is looked up by. Writes are
committed before the operation answers (WAL, synchronous=FULL). Every call is one short
transaction under one lock; callers run it in worker threads, never on the event loop.
Activities are kept `KEEP_ACTIVITIES_S` (six weeks, as AWS keeps them) and at most
`MAX_ACTIVITIES` per resource, pruned as new ones are added.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

DB_NAME = "autoscaling.db"
SCHEMA_VERSION = 1
KEEP_ACTIVITIES_S = 42 * 86_400.0
MAX_ACTIVITIES = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    resource_id TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    arn TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (resource_id, name)
);
CREATE TABLE IF NOT EXISTS scheduled (
    arn TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (resource_id, name)
);
CREATE TABLE IF NOT EXISTS activities (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    resource_id TEXT NOT NULL,
    started REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_by_resource ON activities (resource_id, seq);
"""

Doc = dict[str, Any]


class SchemaTooNew(RuntimeError):
    """The state dir was written by a newer polyhost: refuse rather than misread it."""


def _dumps(doc: Doc) -> str:
    return json.dumps(doc, separators=(",", ":"))


class AutoscalingStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            self._db.close()
            raise SchemaTooNew(
                f"{path} has autoscaling schema {row[0]}, newer than this polyhost's "
                f"{SCHEMA_VERSION}: run the newer polyhost, or move the file away."
            )

    @classmethod
    def open(cls, state_dir: Path) -> AutoscalingStore:
        return cls(state_dir / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _docs(self, sql: str, args: tuple[Any, ...] = ()) -> list[Doc]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [json.loads(row[0]) for row in rows]

    # -- scalable targets ------------------------------------------------------------------------
    def targets(self) -> list[Doc]:
        return self._docs("SELECT doc FROM targets ORDER BY created, resource_id")

    def target(self, resource_id: str) -> Doc | None:
        found = self._docs("SELECT doc FROM targets WHERE resource_id = ?", (resource_id,))
        return found[0] if found else None

    def target_by_arn(self, arn: str) -> Doc | None:
        found = self._docs("SELECT doc FROM targets WHERE arn = ?", (arn,))
        return found[0] if found else None

    def count_targets(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM targets").fetchone()[0])

    def put_target(self, doc: Doc) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO targets VALUES (?, ?, ?, ?)",
                (doc["ResourceId"], doc["ScalableTargetARN"], doc["CreationTime"], _dumps(doc)),
            )

    def delete_target(self, resource_id: str) -> None:
        """The target with its policies and scheduled actions (as Deregister does on AWS)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for table in ("targets", "policies", "scheduled"):
                self._db.execute(f"DELETE FROM {table} WHERE resource_id = ?", (resource_id,))

    # -- scaling policies ------------------------------------------------------------------------
    def policies(self, resource_id: str | None = None) -> list[Doc]:
        if resource_id is None:
            return self._docs("SELECT doc FROM policies ORDER BY resource_id, name")
        return self._docs(
            "SELECT doc FROM policies WHERE resource_id = ? ORDER BY name", (resource_id,)
        )

    def policy(self, arn: str) -> Doc | None:
        found = self._docs("SELECT doc FROM policies WHERE arn = ?", (arn,))
        return found[0] if found else None

    def policy_named(self, resource_id: str, name: str) -> Doc | None:
        found = self._docs(
            "SELECT doc FROM policies WHERE resource_id = ? AND name = ?", (resource_id, name)
        )
        return found[0] if found else None

    def put_policy(self, doc: Doc) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM policies WHERE resource_id = ? AND name = ?",
                (doc["ResourceId"], doc["PolicyName"]),
            )
            self._db.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?)",
                (doc["PolicyARN"], doc["ResourceId"], doc["PolicyName"], _dumps(doc)),
            )

    def delete_policy(self, arn: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM policies WHERE arn = ?", (arn,))

    # -- scheduled actions -----------------------------------------------------------------------
    def scheduled(self, resource_id: str | None = None) -> list[Doc]:
        if resource_id is None:
            return self._docs("SELECT doc FROM scheduled ORDER BY resource_id, name")
        return self._docs(
            "SELECT doc FROM scheduled WHERE resource_id = ? ORDER BY name", (resource_id,)
        )

    def scheduled_named(self, resource_id: str, name: str) -> Doc | None:
        found = self._docs(
            "SELECT doc FROM scheduled WHERE resource_id = ? AND name = ?", (resource_id, name)
        )
        return found[0] if found else None

    def put_scheduled(self, doc: Doc) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM scheduled WHERE resource_id = ? AND name = ?",
                (doc["ResourceId"], doc["ScheduledActionName"]),
            )
            self._db.execute(
                "INSERT INTO scheduled VALUES (?, ?, ?, ?)",
                (
                    doc["ScheduledActionARN"],
                    doc["ResourceId"],
                    doc["ScheduledActionName"],
                    _dumps(doc),
                ),
            )

    def delete_scheduled(self, resource_id: str, name: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM scheduled WHERE resource_id = ? AND name = ?", (resource_id, name)
            )

    # -- scaling activities ----------------------------------------------------------------------
    def put_activity(self, doc: Doc) -> None:
        """Add or update an activity (by its ActivityId), pruning old ones of the resource."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            updated = self._db.execute(
                "UPDATE activities SET doc = ? WHERE id = ?", (_dumps(doc), doc["ActivityId"])
            ).rowcount
            if updated:
                return
            self._db.execute(
                "INSERT INTO activities (id, resource_id, started, doc) VALUES (?, ?, ?, ?)",
                (doc["ActivityId"], doc["ResourceId"], doc["StartTime"], _dumps(doc)),
            )
            self._db.execute(
                "DELETE FROM activities WHERE started < ?",
                (doc["StartTime"] - KEEP_ACTIVITIES_S,),
            )
            self._db.execute(
                "DELETE FROM activities WHERE resource_id = ? AND seq NOT IN (SELECT seq FROM "
                "activities WHERE resource_id = ? ORDER BY seq DESC LIMIT ?)",
                (doc["ResourceId"], doc["ResourceId"], MAX_ACTIVITIES),
            )

    def activities(self, resource_id: str | None = None) -> list[Doc]:
        """Newest first."""
        if resource_id is None:
            return self._docs("SELECT doc FROM activities ORDER BY seq DESC")
        return self._docs(
            "SELECT doc FROM activities WHERE resource_id = ? ORDER BY seq DESC", (resource_id,)
        )

    def in_progress(self) -> list[Doc]:
        return self._docs(
            "SELECT doc FROM activities WHERE json_extract(doc, '$.StatusCode') = 'InProgress' "
            "ORDER BY seq"
        )
