"""The results store: claims and leases, results round-trip, frames, and clear errors on bad files.
No training here (fake result records), so the whole file runs in a few seconds without torch."""
import json
import multiprocessing
import sqlite3
import time

import pytest

from dwlib.config import ModelConfig, TrainConfig, count_params, run_key, to_dict
from dwlib.store import Store, StoreError


def make_run(depth=2, width=64, seed=0, steps=30):
    m = ModelConfig(depth=depth, width=width, context=32, head_dim=16)
    t = TrainConfig(steps=steps, batch_size=4, seed=seed)
    key = run_key(m, t, "fp-test")
    config = {"model": to_dict(m), "train": to_dict(t), "corpus_fingerprint": "fp-test"}
    return m, t, key, config


def fake_result(m, t, key, status="complete", val=2.5):
    steps = t.steps
    curve = [{"step": s, "tokens": s * 128, "flops": s * 1e6, "train_loss": 5.0 - s / 10,
              "val_loss": (val if s == steps else None), "lr": 1e-3} for s in range(1, steps + 1)]
    norms = [{"step": steps, "layer": layer, "name": "block" if 0 <= layer < m.depth else "other",
              "norm": 0.1 * (layer + 2)} for layer in range(-1, m.depth + 1)]
    return {"status": status, "diverged_step": 7 if status == "diverged" else None,
            "model": to_dict(m), "train": to_dict(t), "run_key": key, "params": count_params(m),
            "non_embedding_params": 123, "flops_per_token": 1e5, "steps": steps, "tokens": steps * 128,
            "flops": steps * 1.28e7, "train_loss": 2.4, "val_loss": val, "best_val_loss": val - 0.1,
            "curve": curve, "grad_norms": norms, "wall_seconds": 1.5, "tokens_per_second": 2560.0,
            "device": "cpu", "corpus": "stdlib", "tokenizer": "byte", "corpus_fingerprint": "fp-test",
            "versions": {"torch": "x"}}


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "runs.sqlite")


def test_new_store_is_wal_and_reopens(tmp_path):
    path = tmp_path / "sub" / "runs.sqlite"
    Store(path)
    Store(path)   # reopening an existing store is fine
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_claim_finish_roundtrip(store):
    m, t, key, config = make_run()
    assert store.get(key) is None
    assert store.claim(key, config, owner="a")
    row = store.get(key)
    assert row["status"] == "running" and row["attempts"] == 1 and row["result"] is None
    assert row["short_id"] == key[:10] and row["config"] == json.loads(json.dumps(config))
    assert row["checkpoint"] == str(store.checkpoint_path(key))
    assert store.checkpoint_path(key) == store.path.parent / "checkpoints" / f"{key}.pt"
    assert store.heartbeat(key, "a")

    result = fake_result(m, t, key)
    assert store.finish(key, result, owner="a")
    row = store.get(key)
    assert row["status"] == "complete" and row["lease_owner"] is None
    # the full record comes back, curve and gradient norms included
    got = row["result"]
    assert got["val_loss"] == result["val_loss"] and got["versions"] == {"torch": "x"}
    assert [c["step"] for c in got["curve"]] == list(range(1, t.steps + 1))
    assert got["curve"][-1]["val_loss"] == 2.5 and got["curve"][0]["val_loss"] is None
    assert len(got["grad_norms"]) == m.depth + 2
    # a finished run cannot be claimed again: it is a cache hit
    assert not store.claim(key, config, owner="b")
    assert store.resolve(key[:10]) == key


def test_live_lease_blocks_expired_lease_is_taken_over(store):
    _, _, key, config = make_run()
    assert store.claim(key, config, owner="a", lease_seconds=600)
    assert not store.claim(key, config, owner="b")          # a's lease is live
    assert store.claim(key, config, owner="a")              # the holder may re-claim
    assert store.heartbeat(key, "a", lease_seconds=0.05)    # a's last heartbeat; then a "dies"
    time.sleep(0.1)                                          # sleeps at least this long: the lease has lapsed
    assert store.runs_frame()["status"].tolist() == ["interrupted"]
    assert store.claim(key, config, owner="b", lease_seconds=30)
    row = store.get(key)
    assert row["lease_owner"] == "b" and row["attempts"] == 3
    # the old holder has lost the lease: its heartbeat and its result are refused
    assert not store.heartbeat(key, "a")
    m, t, _, _ = make_run()
    assert not store.finish(key, fake_result(m, t, key), owner="a")
    assert store.get(key)["status"] == "running"
    assert store.finish(key, fake_result(m, t, key), owner="b")


def test_release_lets_another_claim_at_once(store):
    _, _, key, config = make_run()
    assert store.claim(key, config, owner="a", lease_seconds=600)
    store.release(key, "a")
    assert store.claim(key, config, owner="b")


def test_failed_run_is_retried_diverged_is_final(store):
    m, t, key, config = make_run()
    assert store.claim(key, config, owner="a")
    store.fail(key, "RuntimeError: boom", owner="a")
    row = store.get(key)
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom"
    assert store.claim(key, config, owner="b")              # failures may be transient: retry
    assert store.get(key)["error"] is None and store.get(key)["attempts"] == 2
    assert store.finish(key, fake_result(m, t, key, status="diverged", val=float("nan")))
    assert store.get(key)["status"] == "diverged"
    assert not store.claim(key, config, owner="c")           # divergence is a result, not an error
    frame = store.runs_frame()
    assert frame.loc[0, "status"] == "diverged" and frame.loc[0, "diverged_step"] == 7


def test_finish_rejects_bad_status_and_unknown_run(store):
    m, t, key, config = make_run()
    with pytest.raises(ValueError, match="never claimed"):
        store.finish(key, fake_result(m, t, key))
    store.claim(key, config, owner="a")
    with pytest.raises(ValueError, match="status"):
        store.finish(key, {"status": "running"})


def test_frames(store):
    runs = [make_run(depth=d, width=w, seed=s) for d, w, s in [(1, 32, 0), (2, 64, 0), (2, 64, 1)]]
    for i, (m, t, key, config) in enumerate(runs):
        store.claim(key, config, owner="a")
        if i < 2:
            store.finish(key, fake_result(m, t, key, val=3.0 - i))
    frame = store.runs_frame()
    assert frame["run_key"].tolist() == [r[2] for r in runs]
    assert frame["status"].tolist() == ["complete", "complete", "running"]
    assert frame["depth"].tolist() == [1, 2, 2] and frame["width"].tolist() == [32, 64, 64]
    assert frame["seed"].tolist() == [0, 0, 1]
    assert frame["val_loss"].iloc[:2].tolist() == [3.0, 2.0] and frame["val_loss"].isna().iloc[2]
    # an unfinished run shows what it will cost, computed from its config
    m, t, _, _ = runs[2]
    assert frame["params"].iloc[2] == count_params(m)
    assert frame["steps"].iloc[2] == t.steps and frame["tokens"].iloc[2] == t.steps * t.batch_size * m.context
    for col in ("run_id", "heads", "context", "mlp", "norm", "share", "parametrization", "lr",
                "batch_size", "non_embedding_params", "flops_per_token", "flops", "train_loss",
                "best_val_loss", "wall_seconds", "tokens_per_second", "device", "corpus",
                "corpus_fingerprint", "attempts", "error", "created", "updated", "schedule", "warmup",
                "cooldown", "tokens_per_param", "final_slope", "clip_fraction", "unstable_reason"):
        assert col in frame.columns, col
    # the resolved warmup (5% of 30 steps), the regime in tokens per non-embedding parameter
    assert frame["warmup"].tolist() == [2, 2, 2] and frame["schedule"].tolist() == ["cosine"] * 3
    assert frame["tokens_per_param"].iloc[2] == pytest.approx(frame["tokens"].iloc[2] / frame["non_embedding_params"].iloc[2])
    # order follows `keys`
    assert store.runs_frame(keys=[runs[2][2], runs[0][2]])["depth"].tolist() == [2, 1]

    curves = store.curves_frame()
    assert len(curves) == 2 * 30 and set(curves["run_id"]) == {runs[0][2][:10], runs[1][2][:10]}
    assert {"step", "tokens", "flops", "train_loss", "val_loss", "depth", "width", "seed"} <= set(curves.columns)
    assert curves["val_loss"].notna().sum() == 2
    one = store.curves_frame(keys=[runs[1][2]])
    assert len(one) == 30 and set(one["depth"]) == {2}

    norms = store.grad_norms_frame()
    assert len(norms) == (1 + 2) + (2 + 2)
    assert {"run_id", "step", "layer", "name", "norm", "depth", "width"} <= set(norms.columns)
    assert norms["layer"].min() == -1


def test_empty_store_frames(store):
    assert store.runs_frame().empty and store.curves_frame().empty and store.grad_norms_frame().empty


def test_delete_forgets_a_run(store):
    m, t, key, config = make_run()
    store.claim(key, config, owner="a")
    store.finish(key, fake_result(m, t, key))
    store.delete(key)
    assert store.get(key) is None and store.curves_frame().empty


# -- bad files --------------------------------------------------------------------------------

def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not the runs you are looking for\n" * 100)
    with pytest.raises(ValueError, match="notes.txt"):
        Store(path)


def test_garbage_file_is_rejected(tmp_path):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ValueError, match="garbage.sqlite"):
        Store(path)


def test_truncated_store_is_rejected(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = Store(path)
    for d in range(1, 6):
        m, t, key, config = make_run(depth=d, steps=200)
        store.claim(key, config, owner="a")
        store.finish(key, fake_result(m, t, key))
    del store
    assert not (tmp_path / "runs.sqlite-wal").exists() or (tmp_path / "runs.sqlite-wal").stat().st_size == 0
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="runs.sqlite"):
        Store(path)


def test_damaged_page_is_rejected(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = Store(path)
    for d in range(1, 6):
        m, t, key, config = make_run(depth=d, steps=200)
        store.claim(key, config, owner="a")
        store.finish(key, fake_result(m, t, key))
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page: 4 * page] = b"\xff" * page   # scribble over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="runs.sqlite"):
        Store(path)


def test_foreign_sqlite_database_is_rejected(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="other.db.*not a dwlib store"):
        Store(path)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        Store(tmp_path)


def test_a_read_only_store_refuses_writes_naming_the_file(tmp_path, read_only):
    path = tmp_path / "runs.sqlite"
    m, t, key, config = make_run(depth=1)
    Store(path).claim(key, config, owner="a")
    read_only(path)
    store = Store(path)                       # reading still works: cached runs can be served
    assert store.get(key)["status"] == "running"
    m, t, key2, config2 = make_run(depth=2)
    with pytest.raises(StoreError, match="runs.sqlite"):
        store.claim(key2, config2, owner="a")


def test_a_store_in_a_read_only_folder_is_a_clear_error(tmp_path, read_only):
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(folder)
    with pytest.raises(StoreError, match="locked/runs.sqlite"):
        Store(folder / "runs.sqlite")
    with pytest.raises(StoreError, match="locked/deeper/runs.sqlite"):
        Store(folder / "deeper" / "runs.sqlite")


def test_readonly_open_never_writes_even_an_empty_file(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    with pytest.raises(ValueError, match="empty.sqlite.*empty"):
        Store(path, readonly=True)
    assert path.stat().st_size == 0 and not list(tmp_path.glob("empty.sqlite-*"))
    store = Store(tmp_path / "runs.sqlite")
    m, t, key, config = make_run()
    store.claim(key, config, owner="a")
    store.finish(key, fake_result(m, t, key))
    listing = Store(tmp_path / "runs.sqlite", readonly=True)
    assert list(listing.runs_frame()["run_key"]) == [key]
    with pytest.raises(StoreError, match="runs.sqlite"):
        listing.delete(key)


# -- concurrency ------------------------------------------------------------------------------

def _race(path, owner, keys, queue):
    store = Store(path)
    won = [k for k in keys if store.claim(k, {"model": {}, "train": {}}, owner=owner, lease_seconds=600)]
    queue.put((owner, won))


def test_concurrent_claims_each_run_claimed_once(tmp_path):
    path = tmp_path / "runs.sqlite"
    Store(path)
    keys = [f"{i:064x}" for i in range(60)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, f"p{i}", keys[::1 if i % 2 else -1], queue))
             for i in range(4)]
    for p in procs:
        p.start()
    wins = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    claimed = [k for won in wins.values() for k in won]
    assert sorted(claimed) == sorted(keys)        # every run claimed, none twice
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*), SUM(attempts) FROM runs").fetchone() == (60, 60)
    con.close()


def test_a_dead_local_holder_is_taken_over_at_once(store):
    """A holder on this host whose process is gone (kill -9, crashed kernel) does not make the next
    claimant wait out its lease; a live one does."""
    import os
    import socket
    import subprocess
    import sys

    from dwlib.store import owner_id
    _, _, key, config = make_run()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    assert store.claim(key, config, owner=f"{socket.gethostname()}:{gone}:x", lease_seconds=600)
    assert store.runs_frame()["status"].tolist() == ["interrupted"]
    assert store.claim(key, config, owner="b", lease_seconds=600)
    _, _, key2, config2 = make_run(depth=3)
    assert store.claim(key2, config2, owner=owner_id(), lease_seconds=600)   # this process: alive
    parent = f"{socket.gethostname()}:{os.getppid()}:x"                      # alive too
    _, _, key3, config3 = make_run(depth=4)
    assert store.claim(key3, config3, owner=parent, lease_seconds=600)
    assert not store.claim(key2, config2, owner="c") and not store.claim(key3, config3, owner="c")


# -- schema migration -------------------------------------------------------------------------

def test_a_store_of_schema_1_is_migrated_in_place_with_its_runs(tmp_path):
    """tests/fixtures/store-v1.sqlite was written by the dwlib before schema 2 (a real tiny sweep:
    two complete runs, one diverged, one failed, one still 'running' whose holder is gone)."""
    import shutil
    from pathlib import Path
    from dwlib.config import model_config_from_dict, train_config_from_dict
    path = tmp_path / "runs.sqlite"
    shutil.copy(Path(__file__).parent / "fixtures" / "store-v1.sqlite", path)
    con = sqlite3.connect(path)
    before = con.execute("SELECT run_key, status, result, attempts FROM runs ORDER BY run_key").fetchall()
    curves_before = con.execute("SELECT run_key, step, train_loss, val_loss FROM curves ORDER BY 1, 2").fetchall()
    norms_before = con.execute("SELECT COUNT(*) FROM grad_norms").fetchone()[0]
    con.close()
    assert sorted(r[1] for r in before) == ["complete", "complete", "diverged", "failed", "running"]

    store = Store(path)
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "dwlib-runs-2"
    assert con.execute("SELECT run_key, status, result, attempts FROM runs ORDER BY run_key").fetchall() == before
    assert con.execute("SELECT run_key, step, train_loss, val_loss FROM curves ORDER BY 1, 2").fetchall() == curves_before
    assert con.execute("SELECT COUNT(*) FROM grad_norms").fetchone()[0] == norms_before > 0
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    frame = store.runs_frame()
    assert sorted(frame["status"]) == ["complete", "complete", "diverged", "failed", "interrupted"]
    done = frame[frame["status"] == "complete"]
    assert done["val_loss"].notna().all() and done["final_slope"].isna().all()   # not recorded then
    assert (done["tokens_per_param"] > 0).all() and set(frame["schedule"]) == {"cosine"}
    curves = store.curves_frame()
    assert len(curves) == len(curves_before) and curves["seconds"].isna().all()
    # the runs keep their keys: a sweep asking for them again is served from the store
    for key in done["run_key"]:
        config = store.get(key)["config"]
        assert run_key(model_config_from_dict(config["model"]), train_config_from_dict(config["train"]),
                       config["corpus_fingerprint"]) == key
    # the migrated store takes the new status, and opens again as schema 2
    m, t, key, config = make_run(depth=5)
    assert store.claim(key, config, owner="a")
    assert store.finish(key, fake_result(m, t, key, status="unstable"), owner="a")
    assert Store(path).get(key)["status"] == "unstable"


def _open_and_count(path, queue):
    queue.put(len(Store(path).runs_frame()))


def test_processes_opening_a_schema_1_store_at_once_migrate_it_once(tmp_path):
    import shutil
    from pathlib import Path
    path = tmp_path / "runs.sqlite"
    shutil.copy(Path(__file__).parent / "fixtures" / "store-v1.sqlite", path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_count, args=(path, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    counts = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert counts == [5, 5, 5] and all(p.exitcode == 0 for p in procs)


def test_unstable_is_final_and_curve_seconds_round_trip(store):
    m, t, key, config = make_run()
    store.claim(key, config, owner="a")
    result = fake_result(m, t, key, status="unstable", val=6.0)
    result["unstable_reason"] = "final validation loss 6.0 >= ln(vocab)"
    for i, row in enumerate(result["curve"]):
        row["seconds"] = 0.1 * (i + 1)
    assert store.finish(key, result, owner="a")
    assert not store.claim(key, config, owner="b")              # served from the store, never retrained
    got = store.get(key)["result"]
    assert got["curve"][-1]["seconds"] == pytest.approx(3.0)
    row = store.runs_frame().iloc[0]
    assert row["status"] == "unstable" and row["unstable_reason"].startswith("final validation loss")
    assert store.curves_frame()["seconds"].iloc[-1] == pytest.approx(3.0)
