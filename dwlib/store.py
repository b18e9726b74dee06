r"""The results store: one SQLite file of training runs keyed by their config hash.

A run's identity is `dwlib.config.run_key(model, train, corpus_fingerprint)`; everything keys off it —
the row, the cache lookup, the checkpoint file `<store dir>/checkpoints/<run_key>.pt`. The first 10 hex
digits are the short id users see.

A run moves through these states:

    (absent) --claim--> running --finish--> complete | diverged | unstable   (final: served from the cache)
                           |  \--fail----> failed                   (claimable again: errors may be transient)
                           \-- holder dies / Ctrl-C --> "interrupted" in runs_frame: claimable again,
                                                        resumes from its checkpoint

Before training a run, a process *claims* it: an atomic `BEGIN IMMEDIATE` transaction that succeeds only
if nobody else holds a live lease. The holder renews the lease (`heartbeat`) while it trains; if it dies
(kill -9, power loss) the lease simply expires — at once when the dead holder was on this host, see
`owner_id` — and the next claimant resumes from the checkpoint. So a run is never recorded complete
unless `finish` ran, and two processes never train the same run at once.

Stdlib only (sqlite3, json) plus pandas for the frames: no torch, so listing results is instant.
WAL mode lets readers (a notebook charting live) run beside a writer. SQLite's locking needs a local
filesystem; do not put the store on NFS.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .config import (count_params, flops_per_token, model_config_from_dict, non_embedding_params,
                     steps_for_budget, tokens_per_step, train_config_from_dict, warmup_steps)

DEFAULT_PATH = Path("outputs") / "runs.sqlite"
SCHEMA = "dwlib-runs-2"      # 2: status 'unstable', curves.seconds (stores of schema 1 are migrated on open)
SHORT_ID_LENGTH = 10
DONE = ("complete", "diverged", "unstable")   # a final result: served from the cache, never retrained

_RUNS = """
CREATE TABLE {name} (
    run_key       TEXT PRIMARY KEY,
    short_id      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'complete', 'diverged', 'unstable', 'failed')),
    config        TEXT NOT NULL,          -- json: {{"model": {{...}}, "train": {{...}}, "corpus_fingerprint": ...}}
    result        TEXT,                   -- json: the trainer's result record without curve / grad_norms
    error         TEXT,
    lease_owner   TEXT,
    lease_expires REAL,
    checkpoint    TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,   -- claims so far: 1 for a run trained in one go
    created       REAL NOT NULL,
    updated       REAL NOT NULL
);
"""
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
""" + _RUNS.format(name="IF NOT EXISTS runs") + """
CREATE INDEX IF NOT EXISTS runs_short_id ON runs (short_id);
CREATE TABLE IF NOT EXISTS curves (
    run_key    TEXT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    tokens     REAL,
    flops      REAL,
    train_loss REAL,
    val_loss   REAL,
    lr         REAL,
    seconds    REAL,           -- train seconds since the run's first step
    PRIMARY KEY (run_key, step)
);
CREATE TABLE IF NOT EXISTS grad_norms (
    run_key TEXT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    layer   INTEGER NOT NULL,
    name    TEXT NOT NULL,
    norm    REAL,
    PRIMARY KEY (run_key, step, layer, name)
);
"""
_CURVE_COLUMNS = "step, tokens, flops, train_loss, val_loss, lr, seconds"
# runs_frame's columns, named by where each comes from: the run's config (model., train.), its size and
# budget (`_size`), its result record's outcome, the row's bookkeeping
RUN_COLUMNS = ("run_id", "run_key", "status", "model.depth", "model.width", "heads", "model.context", "model.mlp",
               "model.norm", "model.share", "model.parametrization", "train.lr", "train.schedule", "warmup",
               "train.cooldown", "train.seed", "train.batch_size", "steps", "params", "non_embedding_params",
               "flops_per_token", "tokens", "flops", "tokens_per_param", "final_slope", "train_loss", "val_loss",
               "best_val_loss", "task_accuracy", "task_scored", "task_accuracy_by_hops", "diverged_step",
               "unstable_reason", "clip_fraction", "wall_seconds", "tokens_per_second", "device", "train.corpus",
               "train.tokenizer", "corpus_fingerprint", "attempts", "error", "created", "updated")
_OUTCOME = RUN_COLUMNS[   # the result record's outcome: None until the run finishes
    RUN_COLUMNS.index("final_slope"):RUN_COLUMNS.index("train.corpus")]
_CONFIG = [(c, *c.split(".")) for c in RUN_COLUMNS if "." in c]   # (column, "model" or "train", field)
_FLOATS = ("train_loss", "val_loss", "best_val_loss", "task_accuracy", "wall_seconds", "tokens_per_second", "flops",
           "flops_per_token", "lr", "cooldown", "tokens_per_param", "final_slope", "clip_fraction")


def _migrate_from_1(con) -> None:
    """Schema 1 → 2 in one transaction (a crash leaves schema 1 intact): SQLite cannot alter a CHECK
    constraint, so the runs table is rebuilt with 'unstable' allowed; curves gain `seconds`. Foreign
    keys are off meanwhile, or dropping the old runs table would cascade-delete every curve."""
    con.execute("PRAGMA foreign_keys = OFF")
    with _transaction(con):
        if con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "dwlib-runs-1":
            con.execute(_RUNS.format(name="runs_new"))
            con.execute("INSERT INTO runs_new SELECT run_key, short_id, status, config, result, error, lease_owner, "
                        "lease_expires, checkpoint, attempts, created, updated FROM runs")
            con.execute("DROP TABLE runs")
            con.execute("ALTER TABLE runs_new RENAME TO runs")
            con.execute("CREATE INDEX runs_short_id ON runs (short_id)")
            con.execute("ALTER TABLE curves ADD COLUMN seconds REAL")
            con.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA,))
            if con.execute("PRAGMA foreign_key_check").fetchall():
                raise sqlite3.DatabaseError("migration left curves or gradient norms without their run")
    con.execute("PRAGMA foreign_keys = ON")


def _size(m, t, result: dict) -> dict:
    """runs_frame's size and budget of a run: from its config, with the steps, tokens and parameters its
    result record reports once it has finished (a diverged run trained fewer tokens than planned)."""
    try:
        planned = steps_for_budget(m, t)
    except ValueError:   # a plan too long to train: only ever stored as a failed run
        planned = 0
    tokens = result.get("tokens", planned * tokens_per_step(m, t))
    return dict(heads=m.heads, warmup=warmup_steps(planned, t), steps=result.get("steps", planned),
                params=result.get("params", count_params(m)), non_embedding_params=non_embedding_params(m),
                flops_per_token=flops_per_token(m), tokens=tokens, flops=tokens * flops_per_token(m),
                tokens_per_param=tokens / non_embedding_params(m))


@contextmanager
def _transaction(con):
    """BEGIN IMMEDIATE … COMMIT on `con`: the write lock is taken up front, so a read-then-update inside
    cannot race another process; any exception rolls it back."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _only(con, keys) -> str:
    """A WHERE clause for the runs (as `r`) whose keys are in `keys`, held in a temporary table: a literal
    `IN (?, ?, …)` would run into sqlite's limit on bound parameters."""
    con.execute("CREATE TEMP TABLE wanted (run_key TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO wanted VALUES (?)", [(k,) for k in dict.fromkeys(keys)])
    return " WHERE r.run_key IN (SELECT run_key FROM wanted)"


def owner_id() -> str:
    """A fresh lease-holder name, "host:pid:token". Claims read it back to see whether a holder on this
    host has died (kill -9, a crashed kernel), so a rerun resumes at once instead of waiting out the
    lease; holders on other hosts are judged by their lease alone."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(owner: str | None) -> bool:
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:      # exists but is not ours to signal
        return False
    return False


# sqlite's primary result codes for "this is not (or no longer) a database", and for "it cannot be
# opened or written": PERM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_UNWRITABLE = (3, 5, 6, 8, 10, 13, 14)


class StoreError(RuntimeError):
    """The store's file could not be opened or written: a read-only file or folder, a full disk, a lock
    held past the timeout. A sweep stops on it: a result that cannot be stored must not look like none."""


class Store:
    """A results store at `path` (created with its folder if missing).

    Raises ValueError naming the path if the file is not SQLite, is corrupted, or is an SQLite
    database that belongs to something else, and StoreError naming it if it cannot be opened or
    written. `check` runs sqlite's quick_check over the whole file (~50 ms for 35 MB); worker processes
    of a sweep skip it, their parent has checked. `readonly` opens an existing store for listing only:
    it never creates or changes the file (an empty file is refused, not made a store). Each method
    opens its own short connection, so a Store is cheap to pickle into worker processes and safe to
    use from a heartbeat thread.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, *, timeout: float = 60.0, check: bool = True,
                 readonly: bool = False):
        self.path = Path(path)
        self.timeout = timeout
        self.readonly = readonly
        if self.path.is_dir():
            raise ValueError(f"store path {str(self.path)!r} is a directory; give a file such as "
                             f"{str(self.path / 'runs.sqlite')!r}")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of the results store {str(self.path)!r}: {e}") from None
        with self._connect() as con:
            if not readonly:
                con.execute("PRAGMA journal_mode=WAL")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and readonly:
                raise ValueError(f"{str(self.path)!r} is empty: not a dwlib store (a sweep creates one)")
            if tables and "meta" not in tables:
                raise ValueError(f"{str(self.path)!r} is an SQLite database but not a dwlib store "
                                 f"(it holds tables {sorted(tables)}); give another path")
            if "meta" in tables:
                row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None or row[0] not in (SCHEMA, "dwlib-runs-1"):
                    raise ValueError(f"{str(self.path)!r} is not a dwlib store of schema {SCHEMA!r} "
                                     f"(found {row[0] if row else None!r})")
                # A damaged page deep in the file would otherwise surface later, mid-sweep.
                verdict = con.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
                if verdict != "ok":
                    raise ValueError(f"store {str(self.path)!r} is corrupted (sqlite quick_check: {verdict})")
                if row[0] == "dwlib-runs-1":
                    _migrate_from_1(con)
            else:
                # one transaction, so a second process opening the file meanwhile sees all or nothing
                con.executescript(f"BEGIN IMMEDIATE; {_TABLES} "
                                  f"INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA}'); COMMIT;")

    def __repr__(self):
        return f"Store({str(self.path)!r})"

    # -- connections ----------------------------------------------------------------------------

    @contextmanager
    def _connect(self):
        """A connection in autocommit mode; corruption errors become a ValueError naming the file,
        failures to open or write it (read-only, disk full, locked too long) a StoreError naming it."""
        con = None
        try:
            if self.readonly:   # mode=ro: sqlite itself refuses every write, even to an empty file
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                      timeout=self.timeout, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        except sqlite3.DatabaseError as e:
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise ValueError(f"{str(self.path)!r} is not a readable dwlib store: {e}") from None
            if code is not None and code & 0xFF in _SQLITE_UNWRITABLE:
                raise StoreError(f"cannot open or write the results store {str(self.path)!r}: {e}") from None
            raise
        finally:
            if con is not None:
                con.close()

    @contextmanager
    def _write(self):
        """A write transaction on a connection of its own (see `_transaction`)."""
        with self._connect() as con, _transaction(con):
            yield con

    # -- paths and ids ---------------------------------------------------------------------------

    def checkpoint_path(self, run_key: str) -> Path:
        """Where a run's checkpoint lives while it trains, by default: beside the store (a sweep may put
        it elsewhere, e.g. on storage all nodes of a cluster reach: `run_sweep(checkpoint_dir=…)`)."""
        return self.path.parent / "checkpoints" / f"{run_key}.pt"

    def resolve(self, key_or_id: str) -> str:
        """The full run key for a full key or a unique short-id prefix; ValueError otherwise."""
        with self._connect() as con:
            rows = con.execute("SELECT run_key FROM runs WHERE run_key LIKE ? LIMIT 2",
                               (key_or_id + "%",)).fetchall()
        if len(rows) != 1:
            what = "no run" if not rows else "more than one run"
            raise ValueError(f"{what} in {str(self.path)!r} matches id {key_or_id!r}")
        return rows[0][0]

    # -- one run --------------------------------------------------------------------------------

    def get(self, run_key: str) -> dict | None:
        """The stored row for a run as a dict (None if absent): run_key, short_id, status, config,
        error, attempts, lease_owner, lease_expires, checkpoint, created, updated and, for a finished
        run, `result` — the trainer's full result record with its curve and grad_norms lists."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM runs WHERE run_key=?", (run_key,)).fetchone()
            if row is None:
                return None
            rec = dict(row)
            rec["config"] = json.loads(rec["config"])
            if rec["result"] is not None:
                result = json.loads(rec["result"])
                result["curve"] = [dict(r) for r in con.execute(
                    f"SELECT {_CURVE_COLUMNS} FROM curves WHERE run_key=? ORDER BY step", (run_key,))]
                result["grad_norms"] = [dict(r) for r in con.execute(
                    "SELECT step, layer, name, norm FROM grad_norms WHERE run_key=? "
                    "ORDER BY step, layer, name", (run_key,))]
                rec["result"] = result
        return rec

    def claim(self, run_key: str, config: dict, owner: str, lease_seconds: float = 60.0,
              checkpoint: str | None = None) -> bool:
        """Take the lease on a run so that only the caller trains it. True if the caller now holds it:
        the run was absent, failed, held by `owner` already, or its lease expired (its holder died;
        a holder on this host whose process is gone counts as expired at once, see `owner_id`).
        False if it is finished (read it with `get`) or someone else holds a live lease.
        `checkpoint` records where the run's checkpoint goes (default `checkpoint_path`)."""
        now, checkpoint = time.time(), str(checkpoint or self.checkpoint_path(run_key))
        with self._write() as con:
            row = con.execute("SELECT status, lease_owner, lease_expires FROM runs WHERE run_key=?",
                              (run_key,)).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO runs (run_key, short_id, status, config, lease_owner, lease_expires, "
                    "checkpoint, attempts, created, updated) VALUES (?, ?, 'running', ?, ?, ?, ?, 1, ?, ?)",
                    (run_key, run_key[:SHORT_ID_LENGTH], json.dumps(config, sort_keys=True), owner,
                     now + lease_seconds, checkpoint, now, now))
                return True
            status, holder, expires = row
            if status in DONE:
                return False
            live = expires is not None and expires > now and not _holder_is_dead(holder)
            if status == "running" and holder != owner and live:
                return False
            con.execute("UPDATE runs SET status='running', error=NULL, lease_owner=?, lease_expires=?, "
                        "checkpoint=?, attempts=attempts+1, updated=? WHERE run_key=?",
                        (owner, now + lease_seconds, checkpoint, now, run_key))
            return True

    def heartbeat(self, run_key: str, owner: str, lease_seconds: float = 60.0) -> bool:
        """Renew `owner`'s lease. False if the owner no longer holds it (it expired and was taken)."""
        now = time.time()
        with self._write() as con:
            cur = con.execute("UPDATE runs SET lease_expires=?, updated=? WHERE run_key=? AND "
                              "lease_owner=? AND status='running'", (now + lease_seconds, now, run_key, owner))
            return cur.rowcount == 1

    def release(self, run_key: str, owner: str) -> None:
        """Give up a lease without a result (e.g. on Ctrl-C): the run stays resumable and another
        process may claim it at once instead of waiting for the lease to expire."""
        with self._write() as con:
            con.execute("UPDATE runs SET lease_expires=?, updated=? WHERE run_key=? AND lease_owner=? "
                        "AND status='running'", (time.time(), time.time(), run_key, owner))

    def finish(self, run_key: str, result: dict, owner: str | None = None) -> bool:
        """Record a run's result; its status (one of DONE) comes from `result['status']`.
        With `owner`, only the current lease holder may finish (False otherwise, nothing written)."""
        status = result.get("status")
        if status not in DONE:
            raise ValueError(f"result status must be one of {DONE}, got {status!r}")
        scalars = {k: v for k, v in result.items() if k not in ("curve", "grad_norms")}
        curve = [(run_key, int(c["step"]), c.get("tokens"), c.get("flops"), c.get("train_loss"),
                  c.get("val_loss"), c.get("lr"), c.get("seconds")) for c in result.get("curve") or []]
        norms = [(run_key, int(g["step"]), int(g["layer"]), str(g["name"]), g.get("norm"))
                 for g in result.get("grad_norms") or []]
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT status, lease_owner FROM runs WHERE run_key=?", (run_key,)).fetchone()
            if row is None:
                raise ValueError(f"run {run_key[:SHORT_ID_LENGTH]} was never claimed in {str(self.path)!r}")
            if owner is not None and (row[1] != owner or row[0] != "running"):
                return False
            con.execute("DELETE FROM curves WHERE run_key=?", (run_key,))
            con.execute("DELETE FROM grad_norms WHERE run_key=?", (run_key,))
            con.executemany(f"INSERT OR REPLACE INTO curves (run_key, {_CURVE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            curve)
            con.executemany("INSERT OR REPLACE INTO grad_norms VALUES (?, ?, ?, ?, ?)", norms)
            con.execute("UPDATE runs SET status=?, result=?, error=NULL, lease_owner=NULL, "
                        "lease_expires=NULL, updated=? WHERE run_key=?",
                        (status, json.dumps(scalars, sort_keys=True, allow_nan=True), now, run_key))
            return True

    def fail(self, run_key: str, error: str, owner: str | None = None) -> None:
        """Record that a run raised `error`. A failed run is retried by the next request for it."""
        with self._write() as con:
            con.execute("UPDATE runs SET status='failed', error=?, lease_owner=NULL, lease_expires=NULL, "
                        "updated=? WHERE run_key=? AND status='running' AND (? IS NULL OR lease_owner=?)",
                        (str(error), time.time(), run_key, owner, owner))

    def delete(self, run_key: str) -> None:
        """Forget a run (its curves and gradient norms too) so the next request retrains it."""
        with self._write() as con:
            con.execute("DELETE FROM runs WHERE run_key=?", (run_key,))

    # -- frames ---------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT run_key FROM runs ORDER BY created")]

    def runs_frame(self, keys=None):
        """One row per run (oldest first, or in the order of `keys`), tidy columns for charting: RUN_COLUMNS,
        named without their prefix (warmup is its resolved steps; final_slope the val-loss change per
        doubling of tokens over the last quarter; task_accuracy, task_scored and task_accuracy_by_hops, a dict
        {"1": {"accuracy", "scored"}, …}, a k-hop corpus's task scores, None otherwise). Runs not yet finished
        show their planned steps, tokens and FLOPs; a 'running' run whose holder died (lease expired, or its
        process on this host is gone) shows status 'interrupted'."""
        import pandas as pd

        rows = self._rows(keys, "run_key, short_id, status, config, result, error, lease_owner, "
                                "lease_expires, attempts, created, updated")
        now = time.time()
        records = []
        for run_key, short_id, status, config, result, error, holder, expires, attempts, created, updated in rows:
            config = json.loads(config)
            result = json.loads(result) if result else {}
            # through the dataclasses, so a field an older dwlib did not store shows its default
            m = model_config_from_dict(config["model"])
            t = train_config_from_dict(config["train"])
            if status == "running" and (expires is None or expires <= now or _holder_is_dead(holder)):
                status = "interrupted"
            records.append({
                **{column: getattr(m if part == "model" else t, field) for column, part, field in _CONFIG},
                **{k: result.get(k) for k in _OUTCOME}, **_size(m, t, result),
                "run_id": short_id, "run_key": run_key, "status": status, "attempts": attempts, "error": error,
                "corpus_fingerprint": config.get("corpus_fingerprint", result.get("corpus_fingerprint")),
                "created": pd.Timestamp(created, unit="s", tz="UTC"),
                "updated": pd.Timestamp(updated, unit="s", tz="UTC")})
        frame = pd.DataFrame.from_records(records, columns=RUN_COLUMNS)
        frame.columns = [c.rpartition(".")[2] for c in RUN_COLUMNS]
        return frame.astype(dict.fromkeys(_FLOATS, "float64"))

    def curves_frame(self, keys=None):
        """Loss curves in long format: run_id, run_key, step, tokens, flops, train_loss, val_loss, lr,
        seconds (train seconds so far), plus depth, width, seed, status for colouring charts. val_loss is
        NaN between evaluations."""
        return self._long_frame("curves", ", ".join(f"c.{c}" for c in _CURVE_COLUMNS.split(", ")), "c.step", keys)

    def grad_norms_frame(self, keys=None):
        """Per-layer gradient norms in long format: run_id, run_key, step, layer (-1 embedding,
        0..D-1 blocks, D head), name, norm, plus depth, width, seed, status."""
        return self._long_frame("grad_norms", "c.step, c.layer, c.name, c.norm", "c.step, c.layer, c.name",
                                keys)

    # -- helpers --------------------------------------------------------------------------------

    def _rows(self, keys, columns):
        with self._connect() as con:
            if keys is None:
                return con.execute(f"SELECT {columns} FROM runs ORDER BY created, run_key").fetchall()
            keys = list(dict.fromkeys(keys))
            rows = {r[0]: r for r in con.execute(f"SELECT {columns} FROM runs r{_only(con, keys)}")}
        return [rows[k] for k in keys if k in rows]

    def _long_frame(self, table, columns, order, keys):
        import pandas as pd

        with self._connect() as con:
            sql = (f"SELECT r.short_id AS run_id, r.run_key, {columns}, r.status "
                   f"FROM {table} c JOIN runs r ON r.run_key = c.run_key")
            where = "" if keys is None else _only(con, keys)
            frame = pd.read_sql_query(sql + where + f" ORDER BY r.created, r.run_key, {order}", con)
            configs = con.execute(f"SELECT r.run_key, r.config FROM runs r{where}").fetchall()
        # depth / width / seed from the stored config, parsed once per run rather than once per row
        configs = {run_key: json.loads(config) for run_key, config in configs}
        for name, part in (("depth", "model"), ("width", "model"), ("seed", "train")):
            frame[name] = frame["run_key"].map({k: c[part][name] for k, c in configs.items()}).astype("int64")
        floats = ("tokens", "flops", "train_loss", "val_loss", "lr", "seconds", "norm")
        return frame.astype({col: "float64" for col in frame.columns if col in floats})
