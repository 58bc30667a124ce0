"""The results store: one SQLite file per study (``RUN_DIR/study.sqlite``), shared by all workers.

Schema (see docs/rank_corr.md):

* ``meta(key, value)``: schema version, the study config (YAML) and its fingerprint;
* ``archs(arch_id, genotype)``: genotype as canonical JSON;
* ``jobs``: one row per (arch_id, task, seed) with ``state`` pending | running | done | failed,
  the claiming ``worker``, a claim ``token``, ``heartbeat`` (unix time), ``attempts``, ``error``,
  and for done jobs ``best``/``final`` (the task's primary test metric), ``wall`` seconds and the
  full ``result`` JSON (curve, params, FLOPs, config);
* ``attempts``: one row per claim (worker, token, start, end, outcome done | failed | lost |
  discarded | released), the audit trail of who ran what;
* ``proxies``: training-free proxy scores (:mod:`unnas.study.proxy_study`), one row per (arch_id,
  proxy name, settings hash) with ``value`` (NULL: NaN or failed), ``seconds`` and ``error``;
  ``proxy_settings(settings, description)`` what each settings hash stands for (JSON). Added in
  schema version 2: opening a version-1 store creates both tables and records version 2 (older
  code still reads such a store: it never looks at these tables).

Concurrency: every state change is one ``BEGIN IMMEDIATE`` transaction (a single writer at a
time; readers are not blocked in WAL mode). A running job's worker refreshes its heartbeat; a job
whose heartbeat is older than the lease (a killed worker) is claimable again, up to
``max_attempts`` claims. A job's result is accepted once: whichever worker finishes first marks it
done; a later finisher's result is recorded as ``discarded``, never as a second result.

WAL needs all processes on one host (shared memory). For machines sharing a network directory use
``journal="delete"`` (rollback journal; the file system must honour POSIX locks).
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence

from unnas.config import ConfigError

from .archs import Arch, genotype_key
from .jobs import Job, job_hash

SCHEMA_VERSION = "2"   # 2: the proxies and proxy_settings tables
STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS archs (arch_id TEXT PRIMARY KEY, genotype TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    arch_id TEXT NOT NULL REFERENCES archs(arch_id),
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    hkey INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    worker TEXT, token TEXT, heartbeat REAL, claimed_at REAL, finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    best REAL, final REAL, wall REAL,
    result TEXT,
    PRIMARY KEY (arch_id, task, seed)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    arch_id TEXT NOT NULL, task TEXT NOT NULL, seed INTEGER NOT NULL,
    worker TEXT NOT NULL, token TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, outcome TEXT
);
CREATE TABLE IF NOT EXISTS proxies (
    arch_id TEXT NOT NULL, name TEXT NOT NULL, settings TEXT NOT NULL,
    value REAL, seconds REAL, error TEXT, created REAL NOT NULL,
    PRIMARY KEY (arch_id, name, settings)
);
CREATE TABLE IF NOT EXISTS proxy_settings (settings TEXT PRIMARY KEY, description TEXT NOT NULL);
UPDATE meta SET value = '2' WHERE key = 'schema_version' AND value = '1'
"""


class StoreError(ConfigError):
    """A store that cannot be opened or does not match the study being run."""


class Store:
    def __init__(self, path: str | Path, journal: str = "wal", timeout: float = 120.0):
        self.path = Path(path)
        if journal not in ("wal", "delete"):
            raise StoreError(f"STUDY.JOURNAL must be wal or delete, got {journal!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.db.execute(f"PRAGMA journal_mode = {journal}")
            self.db.execute("PRAGMA synchronous = NORMAL" if journal == "wal" else "PRAGMA synchronous = FULL")
            with self.transaction() as db:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): the write lock is taken up front."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- study set-up --------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def init_study(self, archs: Sequence[Arch], jobs: Iterable[Job], config: str, fingerprint: str,
                   describe_change: Callable[[str], str] | None = None) -> int:
        """Register archs and jobs (idempotent; safe when several workers start at once).

        Returns the number of new jobs. Raises :class:`StoreError` if the store already holds a
        study trained with another config (``describe_change(stored config YAML)``, when given,
        names what differs in the message), or an id bound to another genotype.
        """
        with self.transaction() as db:
            old = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if old and old[0] != fingerprint:
                what = ""
                if describe_change is not None:
                    stored = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
                    what = describe_change(stored[0] if stored else "")
                raise StoreError(f"{self.path} holds a study trained with a different configuration (model, data or "
                                 f"training recipe){': ' + what if what else ''}; use a new --out, or the same "
                                 "settings to extend or resume it")
            if not old:
                db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                               [("schema_version", SCHEMA_VERSION), ("fingerprint", fingerprint),
                                ("config", config), ("created", str(time.time()))])
            known = dict(db.execute("SELECT arch_id, genotype FROM archs"))
            new_archs = []
            for a in archs:
                g = genotype_key(a.genotype)
                if a.id in known and known[a.id] != g:
                    raise StoreError(f"{self.path}: architecture id {a.id} is already bound to another genotype; "
                                     "use a new --out for a different architecture list")
                if a.id not in known:
                    new_archs.append((a.id, g))
                    known[a.id] = g
            db.executemany("INSERT INTO archs(arch_id, genotype) VALUES (?, ?)", new_archs)
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO jobs(arch_id, task, seed, hkey) VALUES (?, ?, ?, ?)",
                           [(j.arch_id, j.task, j.seed, job_hash(j)) for j in jobs])
            return db.total_changes - before

    def archs(self) -> list[Arch]:
        from search_spaces import arch_from_json   # the stored dict's fields say its space
        return [Arch(i, arch_from_json(g)) for i, g in self.db.execute("SELECT arch_id, genotype FROM archs ORDER BY arch_id")]

    # ---- claiming ------------------------------------------------------------------------
    def claim(self, worker: str, lease: float, shard: tuple[int, int] | None = None, max_attempts: int = 3,
              tasks: Sequence[str] | None = None, now: float | None = None) -> tuple[Job, str] | None:
        """Atomically take the next pending job (or one whose lease expired); None when none is left."""
        while True:
            with self.transaction() as db:
                t = time.time() if now is None else now
                where = "(state = 'pending' OR (state = 'running' AND heartbeat < ?))"
                args: list = [t - lease]
                if shard is not None:
                    where += " AND hkey % ? = ?"
                    args += [shard[1], shard[0]]
                if tasks:
                    where += f" AND task IN ({','.join('?' * len(tasks))})"
                    args += list(tasks)
                row = db.execute(f"SELECT arch_id, task, seed, state, attempts, token FROM jobs WHERE {where} "
                                 "ORDER BY seed, arch_id, task LIMIT 1", args).fetchone()
                if row is None:
                    return None
                arch_id, task, seed, state, attempts, old_token = row
                key = (arch_id, task, seed)
                if state == "running":  # a stale lease: its worker died or lost the store
                    db.execute("UPDATE attempts SET ended = ?, outcome = 'lost' WHERE token = ? AND outcome IS NULL",
                               (t, old_token))
                    if attempts >= max_attempts:
                        db.execute("UPDATE jobs SET state = 'failed', token = NULL, error = ? "
                                   "WHERE arch_id = ? AND task = ? AND seed = ?",
                                   (f"worker lost {attempts} times (killed, out of memory or heartbeat stopped)", *key))
                        continue
                token = uuid.uuid4().hex
                db.execute("UPDATE jobs SET state = 'running', worker = ?, token = ?, heartbeat = ?, claimed_at = ?, "
                           "attempts = attempts + 1, error = NULL WHERE arch_id = ? AND task = ? AND seed = ?",
                           (worker, token, t, t, *key))
                db.execute("INSERT INTO attempts(arch_id, task, seed, worker, token, started) VALUES (?, ?, ?, ?, ?, ?)",
                           (*key, worker, token, t))
                return Job(arch_id, task, int(seed)), token

    def heartbeat(self, job: Job, token: str) -> bool:
        """Refresh the lease; False when the job is no longer ours (taken over or finished)."""
        with self.transaction() as db:
            cur = db.execute("UPDATE jobs SET heartbeat = ? WHERE arch_id = ? AND task = ? AND seed = ? "
                             "AND token = ? AND state = 'running'", (time.time(), job.arch_id, job.task, job.seed, token))
            return cur.rowcount == 1

    def complete(self, job: Job, token: str, worker: str, result: dict) -> bool:
        """Record a result; False (and the attempt marked 'discarded') if the job was already done."""
        key = (job.arch_id, job.task, job.seed)
        payload = json.dumps(result, default=_jsonable)
        t = time.time()
        with self.transaction() as db:
            state = db.execute("SELECT state FROM jobs WHERE arch_id = ? AND task = ? AND seed = ?", key).fetchone()
            if state is None or state[0] == "done":
                db.execute("UPDATE attempts SET ended = ?, outcome = 'discarded' WHERE token = ?", (t, token))
                return False
            db.execute("UPDATE jobs SET state = 'done', worker = ?, token = ?, finished_at = ?, heartbeat = ?, error = NULL, "
                       "best = ?, final = ?, wall = ?, result = ? WHERE arch_id = ? AND task = ? AND seed = ?",
                       (worker, token, t, t, _num(result.get("best")), _num(result.get("final")),
                        _num(result.get("job_seconds", result.get("wall_time"))), payload, *key))
            db.execute("UPDATE attempts SET ended = ?, outcome = 'done' WHERE token = ?", (t, token))
            return True

    def record_imported(self, job: Job, worker: str, result: dict) -> bool:
        """Mark a registered, not yet done job done with a result from elsewhere (an export of this
        study: :mod:`unnas.study.portable`); its attempt is recorded as 'imported'. False when the
        job is unknown or already done (a running claim on it then finds the job done and discards)."""
        key = (job.arch_id, job.task, job.seed)
        t = time.time()
        with self.transaction() as db:
            state = db.execute("SELECT state FROM jobs WHERE arch_id = ? AND task = ? AND seed = ?", key).fetchone()
            if state is None or state[0] == "done":
                return False
            token = f"import-{t:.6f}"
            db.execute("UPDATE jobs SET state = 'done', worker = ?, token = ?, finished_at = ?, heartbeat = ?, "
                       "error = NULL, best = ?, final = ?, wall = ?, result = ? WHERE arch_id = ? AND task = ? AND seed = ?",
                       (worker, token, t, t, _num(result.get("best")), _num(result.get("final")),
                        _num(result.get("job_seconds", result.get("wall_time"))),
                        json.dumps(result, default=_jsonable), *key))
            db.execute("INSERT INTO attempts(arch_id, task, seed, worker, token, started, ended, outcome) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, 'imported')", (*key, worker, token, t, t))
            return True

    def fail(self, job: Job, token: str, error: str) -> None:
        key = (job.arch_id, job.task, job.seed)
        t = time.time()
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state = 'failed', finished_at = ?, error = ? "
                       "WHERE arch_id = ? AND task = ? AND seed = ? AND token = ? AND state = 'running'",
                       (t, error[:2000], *key, token))
            db.execute("UPDATE attempts SET ended = ?, outcome = 'failed' WHERE token = ?", (t, token))

    def release(self, job: Job, token: str) -> None:
        """Give a claimed job back (clean interruption): pending again, the attempt not counted."""
        key = (job.arch_id, job.task, job.seed)
        with self.transaction() as db:
            cur = db.execute("UPDATE jobs SET state = 'pending', token = NULL, worker = NULL, attempts = attempts - 1 "
                             "WHERE arch_id = ? AND task = ? AND seed = ? AND token = ? AND state = 'running'",
                             (*key, token))
            if cur.rowcount:
                db.execute("UPDATE attempts SET ended = ?, outcome = 'released' WHERE token = ?", (time.time(), token))

    def heartbeat_tokens(self, tokens: Sequence[str]) -> int:
        """Refresh the leases of many claims at once (a driver holding all its executor's jobs);
        returns how many are still running under those tokens."""
        t, n, tokens = time.time(), 0, list(tokens)
        with self.transaction() as db:
            for i in range(0, len(tokens), 500):
                chunk = tokens[i:i + 500]
                n += db.execute(f"UPDATE jobs SET heartbeat = ? WHERE state = 'running' AND token IN "
                                f"({','.join('?' * len(chunk))})", [t, *chunk]).rowcount
        return n

    def release_worker(self, worker: str) -> int:
        """Give back every running claim of ``worker`` (a driver that was stopped, or a dead
        predecessor of the same driver whose tasks died with it): pending again, attempts not counted."""
        t = time.time()
        with self.transaction() as db:
            tokens = [r[0] for r in db.execute("SELECT token FROM jobs WHERE state = 'running' AND worker = ?", (worker,))]
            db.execute("UPDATE jobs SET state = 'pending', token = NULL, worker = NULL, attempts = attempts - 1 "
                       "WHERE state = 'running' AND worker = ?", (worker,))
            db.executemany("UPDATE attempts SET ended = ?, outcome = 'released' WHERE token = ? AND outcome IS NULL",
                           [(t, tok) for tok in tokens])
        return len(tokens)

    def adopt(self, job: Job, token: str, worker: str) -> bool:
        """Take over a running claim by its token (a restarted driver re-attaching to the cluster
        jobs its predecessor submitted): the row's worker becomes ``worker`` and its lease is fresh.
        False when that claim is no longer running (finished, released or taken over)."""
        with self.transaction() as db:
            cur = db.execute("UPDATE jobs SET worker = ?, heartbeat = ? WHERE arch_id = ? AND task = ? AND seed = ? "
                             "AND token = ? AND state = 'running'",
                             (worker, time.time(), job.arch_id, job.task, job.seed, token))
            return cur.rowcount == 1

    def expire(self, job: Job, worker: str) -> None:
        """Mark a running job's lease as expired now (its worker is known to be dead)."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET heartbeat = 0 WHERE arch_id = ? AND task = ? AND seed = ? AND state = 'running' "
                       "AND worker = ?", (job.arch_id, job.task, job.seed, worker))

    def reset_failed(self, tasks: Sequence[str] | None = None) -> int:
        with self.transaction() as db:
            q = "UPDATE jobs SET state = 'pending', attempts = 0, error = NULL, token = NULL WHERE state = 'failed'"
            args: list = []
            if tasks:
                q += f" AND task IN ({','.join('?' * len(tasks))})"
                args = list(tasks)
            return db.execute(q, args).rowcount

    # ---- queries -------------------------------------------------------------------------
    def counts(self, lease: float | None = None, shard: tuple[int, int] | None = None) -> dict:
        where, args = "", []
        if shard is not None:
            where, args = "WHERE hkey % ? = ?", [shard[1], shard[0]]
        out = {s: 0 for s in STATES}
        for state, n in self.db.execute(f"SELECT state, count(*) FROM jobs {where} GROUP BY state", args):
            out[state] = n
        out["total"] = sum(out[s] for s in STATES)
        if lease is not None:
            stale = self.db.execute(f"SELECT count(*) FROM jobs {where + (' AND' if where else 'WHERE')} "
                                    "state = 'running' AND heartbeat < ?", args + [time.time() - lease]).fetchone()[0]
            out["stale"] = stale
        return out

    def mean_wall(self) -> float | None:
        row = self.db.execute("SELECT avg(wall) FROM jobs WHERE state = 'done' AND wall IS NOT NULL").fetchone()
        return row[0]

    def results(self) -> list[dict]:
        rows = self.db.execute("SELECT arch_id, task, seed, best, final, wall, worker, result FROM jobs "
                               "WHERE state = 'done' ORDER BY arch_id, task, seed").fetchall()
        return [{"arch_id": a, "task": t, "seed": s, "best": b, "final": f, "wall": w, "worker": wk,
                 "result": json.loads(r) if r else {}} for a, t, s, b, f, w, wk, r in rows]

    def jobs(self, state: str | None = None) -> list[dict]:
        q = "SELECT arch_id, task, seed, state, worker, attempts, error FROM jobs"
        args = []
        if state:
            q += " WHERE state = ?"
            args = [state]
        cols = ("arch_id", "task", "seed", "state", "worker", "attempts", "error")
        return [dict(zip(cols, r)) for r in self.db.execute(q + " ORDER BY seed, arch_id, task", args)]

    def attempts(self) -> list[dict]:
        cols = ("arch_id", "task", "seed", "worker", "token", "started", "ended", "outcome")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM attempts ORDER BY id")]

    # ---- training-free proxies (unnas.study.proxy_study) -------------------------------------
    def proxy_rows(self, settings: str) -> list[dict]:
        """The stored proxy scores under one settings hash: ``arch_id, name, value (None = NaN or
        failed), seconds, error``."""
        cols = ("arch_id", "name", "value", "seconds", "error")
        return [dict(zip(cols, r)) for r in self.db.execute(
            f"SELECT {', '.join(cols)} FROM proxies WHERE settings = ? ORDER BY arch_id, name", (settings,))]

    def put_proxy(self, arch_id: str, name: str, settings: str, value: float | None, seconds: float | None,
                  error: str | None = None) -> None:
        """Record one score (replacing an older one of the same key); a NaN is stored as NULL."""
        v = None if value is None or value != value else float(value)
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO proxies(arch_id, name, settings, value, seconds, error, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (arch_id, name, settings, v, seconds,
                                                        None if error is None else error[:2000], time.time()))

    def delete_proxies(self, settings: str, names: Sequence[str] | None = None, failed_only: bool = False) -> int:
        """Drop stored scores of one settings hash (of ``names``; only those that failed); their count."""
        with self.transaction() as db:
            q, args = "DELETE FROM proxies WHERE settings = ?", [settings]
            if failed_only:
                q += " AND error IS NOT NULL"
            if names:
                q += f" AND name IN ({','.join('?' * len(names))})"
                args += list(names)
            return db.execute(q, args).rowcount

    def set_proxy_settings(self, settings: str, description: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO proxy_settings(settings, description) VALUES (?, ?)",
                       (settings, description))


def _num(x):
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
