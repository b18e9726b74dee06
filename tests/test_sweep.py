"""Sweeps: designs, the cache, failures, divergence, leases, and the promises that matter most —
a sweep killed with SIGKILL resumes without retraining finished runs, and two processes sweeping one
store train every run exactly once. Tiny models (D ≤ 2, W ≤ 64, T = 32) on a small text corpus."""
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dwlib import sweep
from dwlib.config import (ModelConfig, TrainConfig, default_threads, flops_per_token, non_embedding_params,
                          steps_for_budget, to_dict)
from dwlib.store import Store, StoreError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~120 kB of text from the standard library's own sources: always present, no network."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "\n\n".join((stdlib / name).read_text() for name in ("textwrap.py", "argparse.py"))[:120_000]
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(text)
    return f"file:{path}"


@pytest.fixture
def tiny(corpus):
    """Fields of a tiny, fast run (one torch thread: the test machine's cores are shared)."""
    return dict(context=32, head_dim=16, batch_size=4, eval_every=10, eval_batches=2, threads=1,
                checkpoint_every=10, corpus=corpus)


def count_training(monkeypatch):
    """Replace dwlib.train.train with a wrapper that records which runs it trains."""
    import dwlib.train
    calls = []
    real = dwlib.train.train

    def counting(model_cfg, train_cfg, **kw):
        calls.append((model_cfg.depth, model_cfg.width, train_cfg.lr))
        return real(model_cfg, train_cfg, **kw)

    monkeypatch.setattr(dwlib.train, "train", counting)
    return calls


# -- designs ----------------------------------------------------------------------------------

def test_grid_routes_fields_and_varies_any_field():
    pairs = sweep.grid([2, 4], [64, 128], seeds=[0, 1], steps=30, mlp="swiglu", vary={"lr": [1e-3, 3e-3]})
    assert len(pairs) == 2 * 2 * 2 * 2
    assert {(m.depth, m.width, t.lr, t.seed) for m, t in pairs} == {
        (d, w, lr, s) for d in (2, 4) for w in (64, 128) for lr in (1e-3, 3e-3) for s in (0, 1)}
    assert all(m.mlp == "swiglu" and t.steps == 30 for m, t in pairs)
    # a budget given replaces the base config's budget
    base = TrainConfig(steps=100, lr=1e-2)
    (m, t), = sweep.grid([2], [64], train=base, flops=1e12)
    assert t.flops == 1e12 and t.steps is None and t.lr == 1e-2
    with pytest.raises(ValueError, match="unknown config field.*dept"):
        sweep.grid([2], [64], dept=3)
    with pytest.raises(ValueError, match="width 100 is not divisible"):
        sweep.grid([2], [100])
    with pytest.raises(ValueError, match="depths is empty"):
        sweep.grid([], [64])


def test_depth_and_width_sweeps():
    pairs = sweep.design("depth", widths=[128], depths=[2, 8, 16], steps=10)
    assert [(m.depth, m.width) for m, _ in pairs] == [(2, 128), (8, 128), (16, 128)]
    pairs = sweep.design("width", depths=[4], widths=[64, 128, 256], seeds=[0, 1], steps=10)
    assert [(m.depth, m.width, t.seed) for m, t in pairs][:2] == [(4, 64, 0), (4, 64, 1)] and len(pairs) == 6
    # a depth sweep at each width: width by width; depths and widths default to the base model's
    pairs = sweep.design("depth", widths=[64, 128], depths=[2, 8], steps=10)
    assert [(m.depth, m.width) for m, _ in pairs] == [(2, 64), (8, 64), (2, 128), (8, 128)]
    assert [(m.depth, m.width) for m, _ in sweep.design("grid", model=ModelConfig(depth=3, width=64))] == [(3, 64)]
    with pytest.raises(ValueError, match="design must be one of"):
        sweep.design("spiral")
    with pytest.raises(ValueError, match="design grid takes no budgets"):
        sweep.design("grid", budgets=[1e12])


def test_compute_matched_spends_the_same_flops():
    C = 3e12
    pairs = sweep.design("compute-matched", flops=C, shapes=[(2, 256), (4, 128), (4, 64)], context=128, batch_size=16)
    for m, t in pairs:
        tokens = steps_for_budget(m, t) * t.batch_size * m.context
        # rounded to whole steps: within half a step's FLOPs of C
        assert abs(tokens * flops_per_token(m) - C) <= 0.5 * flops_per_token(m) * t.batch_size * m.context
    steps = [steps_for_budget(m, t) for m, t in pairs]
    assert steps[0] < steps[1] < steps[2]     # smaller models get more tokens for the same C
    with pytest.raises(ValueError, match="flops"):
        sweep.design("compute-matched", flops=-1, shapes=[(2, 64)])


def test_critical_depth_pair_matches_params_at_twice_the_depth():
    pairs = sweep.design("critical-depth", flops=1e13, widths=[256], head_dim=16)
    (m1, t1), (m2, t2) = pairs
    assert m1.depth == round(2.43 * __import__("math").log(256)) == 13 and m1.width == 256
    assert m2.depth == 26 and m2.width < 256 and m2.width % 16 == 0
    n1, n2 = non_embedding_params(m1), non_embedding_params(m2)
    assert abs(n2 - n1) / n1 < 0.1
    # the chosen width is the best multiple of 32: its neighbours match worse
    for w in (m2.width - 16, m2.width + 16):
        assert abs(non_embedding_params(ModelConfig(depth=26, width=w, head_dim=16)) - n1) >= abs(n2 - n1)
    assert t1.flops == t2.flops == 1e13
    (f1, _), (f2, _) = sweep.design("critical-depth", flops=1e13, widths=[256], head_dim=16, match="flops")
    assert abs(flops_per_token(f2) - flops_per_token(f1)) / flops_per_token(f1) < 0.1


def test_isoflop_design():
    with pytest.warns(UserWarning, match="fewer than 10 steps"):
        pairs = sweep.design("isoflop", budgets=[1e11, 1e12], depths=[1, 2, 4, 8], aspect_ratios=[32, 64],
                             head_dim=16, context=64, batch_size=8)
    budgets = sorted({t.flops for _, t in pairs})
    assert budgets == [1e11, 1e12]
    assert all(m.width % 16 == 0 and steps_for_budget(m, t) >= 10 for m, t in pairs)
    assert (8, 512) in {(m.depth, m.width) for m, _ in pairs}
    with pytest.raises(ValueError, match="give shapes"):
        sweep.design("isoflop", budgets=[1e12], depths=[2], widths=[64], aspect_ratios=[32])
    frame = sweep.design_frame(pairs)
    assert len(frame) == len(pairs) and {"params", "flops", "steps", "tokens"} <= set(frame.columns)
    # each shape spends its budget, to within half a step (>= 10 steps: within 5%)
    assert ((frame["flops"] / frame["budget"] - 1).abs() <= 0.05).all()


def test_matched_and_annealed_isoflop_designs():
    """What notebooks 04, 05 and 06 train, as designs anyone can ask for: depths at one shape's size, the
    critical-depth pair at two given depths, and an isoFLOP design trained as one trunk per shape."""
    pairs = sweep.design("matched", depths=[2, 4, 8], widths=[64], reference_depth=4, head_dim=16, steps=5,
                         vary={"share": [1, 2]})
    shapes = [(m.depth, m.width, m.share) for m, _ in pairs]
    assert shapes[2:4] == [(4, 64, 1), (4, 64, 2)] and shapes[0][1] > 64 > shapes[4][1]
    reference = non_embedding_params(pairs[2][0])
    assert all(abs(non_embedding_params(dataclasses.replace(m, share=1)) / reference - 1) < 0.15 for m, _ in pairs)
    (m1, t1), (m2, t2) = sweep.design("critical-depth", flops=1e12, widths=[64], depths=[3, 9], head_dim=16)
    assert (m1.depth, m1.width) == (3, 64) and m2.depth == 9 and m2.width < 64 and t1.flops == t2.flops == 1e12
    with pytest.raises(ValueError, match="two depths"):
        sweep.design("critical-depth", flops=1e12, widths=[64], depths=[3])
    shapes, budgets = [(1, 32), (4, 32)], [1e11, 3e11, 9e11]
    kw = dict(shapes=shapes, budgets=budgets, seeds=[0, 1], head_dim=16, context=64, batch_size=8)
    annealed = sweep.design("isoflop", annealed=True, **kw)
    assert sweep.anneal_cost(annealed)["trunks"] == len(shapes) * 2 and len(annealed) == len(sweep.design("isoflop", **kw))
    for m, t in annealed:   # each run: C / FLOPs-per-token tokens, fully annealed
        assert t.schedule == "wsd-sqrt" and any(t.tokens == round(c / flops_per_token(m)) for c in budgets)
    with pytest.raises(ValueError, match="anneal_at sets token budgets"):
        sweep.design("isoflop", anneal_at=[1e5], **kw)


# -- runs through the store -------------------------------------------------------------------

def test_cache_hit_does_not_train(tmp_path, tiny, monkeypatch):
    calls = count_training(monkeypatch)
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=20, **tiny)
    first = sweep.run(m, t, store=store, progress=False)
    assert first["status"] == "complete" and first["resumed_from_step"] == 0 and len(calls) == 1
    assert not any(store.path.parent.joinpath("checkpoints").iterdir())   # deleted after finishing
    again = sweep.run(m, t, store=store, progress=False)
    assert len(calls) == 1
    assert again["val_loss"] == first["val_loss"] and again["run_key"] == first["run_key"]
    # an execution-only field (threads, device, checkpoint_every) does not make a new run
    sweep.run(m, TrainConfig(**{**to_dict(t), "checkpoint_every": 7}), store=store, progress=False)
    assert len(calls) == 1
    frame = sweep.run_sweep([(m, t)], store=store, progress=False)
    assert frame["attempts"].tolist() == [1] and len(calls) == 1


def test_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path, tiny):
    pairs = sweep.grid([1, 2], [32], steps=20, **tiny)
    pairs.insert(1, sweep.make_pair(depth=1, width=32, steps=20, lr=1e6, **tiny))   # absurd LR
    frame = sweep.run_sweep(pairs, store=tmp_path / "runs.sqlite", progress=False)
    assert frame["status"].tolist() == ["complete", "diverged", "complete"]
    assert frame.loc[1, "diverged_step"] >= 1 and frame.loc[1, "lr"] == 1e6
    assert frame.loc[[0, 2], "val_loss"].notna().all()
    assert not any((tmp_path / "checkpoints").iterdir())


def test_failing_run_is_recorded_retried_and_the_sweep_goes_on(tmp_path, tiny, monkeypatch):
    bad = sweep.make_pair(depth=1, width=32, steps=20, vocab_size=300, **tiny)   # byte tokenizer: 256
    good = sweep.make_pair(depth=2, width=32, steps=20, **tiny)
    store = Store(tmp_path / "runs.sqlite")
    frame = sweep.run_sweep([bad, good], store=store, progress=False)
    assert frame["status"].tolist() == ["failed", "complete"]
    assert "ValueError" in frame.loc[0, "error"] and "vocab" in frame.loc[0, "error"]
    with pytest.raises(ValueError, match="vocab"):   # run() itself re-raises after recording
        sweep.run(*bad, store=store, progress=False)
    assert store.runs_frame()["attempts"].tolist() == [2, 1]   # a failed run is retried


def test_ctrl_c_leaves_the_run_resumable(tmp_path, tiny, monkeypatch):
    import dwlib.train
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=20, **tiny)

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(dwlib.train, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(m, t, store=store, progress=False, lease_seconds=600)
    assert store.runs_frame()["status"].tolist() == ["interrupted"]   # not failed, not complete
    monkeypatch.undo()
    assert sweep.run(m, t, store=store, progress=False)["status"] == "complete"
    assert store.runs_frame()["attempts"].tolist() == [2]


def test_a_corrupt_checkpoint_is_moved_aside_and_the_run_trains_from_step_0(tmp_path, tiny):
    """issue 13: random bytes in a run's checkpoint used to fail the run on every rerun."""
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=30, **tiny)
    ckpt = store.checkpoint_path(sweep.key_for(m, t))

    def stop(point):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run(m, t, store=store, progress=False, on_eval=stop)   # interrupted at step 10, checkpointed
    assert sweep.checkpoint_step(ckpt) == 10
    ckpt.write_bytes(os.urandom(ckpt.stat().st_size))
    with pytest.raises(ValueError, match=f"checkpoint {ckpt} cannot be read"):
        sweep.checkpoint_step(ckpt)                                   # does not pass it off as step 0
    with pytest.warns(RuntimeWarning, match=f"checkpoint {ckpt} cannot be resumed"):
        frame = sweep.run_sweep([(m, t)], store=store, progress=False)
    assert frame["status"].tolist() == ["complete"]
    assert store.get(frame["run_key"][0])["result"]["resumed_from_step"] == 0
    assert [p.name.startswith(ckpt.name + ".corrupt-") for p in ckpt.parent.iterdir()] == [True]


def test_a_lapsed_lease_is_taken_over(tmp_path, tiny, monkeypatch):
    """A run held by a process on another machine that stopped heartbeating: waited for while the
    lease is live, trained once it lapses."""
    monkeypatch.setattr(sweep, "POLL_SECONDS", 0.05)
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=20, **tiny)
    key = sweep.key_for(m, t)
    config = {"model": to_dict(m), "train": to_dict(t), "corpus_fingerprint": "x"}
    holder = "elsewhere:1:dead"
    assert store.claim(key, config, owner=holder, lease_seconds=600)
    assert sweep.run(m, t, store=store, progress=False, wait=False) is None   # live lease: not ours
    real_claim, claims = store.claim, []

    def claim(*args, **kw):   # the holder's lease lapses while the sweep waits: after its first refusal
        claims.append(real_claim(*args, **kw))
        if claims == [False]:
            store.heartbeat(key, holder, lease_seconds=0)
        return claims[-1]

    monkeypatch.setattr(store, "claim", claim)
    result = sweep.run(m, t, store=store, progress=False)                     # waits, then takes over
    assert result["status"] == "complete" and claims == [False, True]
    assert store.get(key)["attempts"] == 2 and store.get(key)["status"] == "complete"


def test_heartbeat_keeps_a_long_run_from_being_taken_over(tmp_path, tiny, monkeypatch):
    import dwlib.train
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=20, **tiny)
    key = sweep.key_for(m, t)
    real_train, real_heartbeat, intruder_claims = dwlib.train.train, store.heartbeat, []
    first_expiry, intruded = [], threading.Event()

    def heartbeat(*args, **kw):
        # right after a renewal past the claim's own lease, an intruder tries to claim the run: the fresh
        # lease (2 s) is the margin, however slowly a busy machine schedules this thread
        if not first_expiry:
            first_expiry.append(store.get(key)["lease_expires"])
        renewed = real_heartbeat(*args, **kw)
        if renewed and not intruded.is_set() and time.time() > first_expiry[0]:
            intruder_claims.append(store.claim(key, {"model": {}, "train": {}}, owner="intruder"))
            intruded.set()
        return renewed

    def slow(model_cfg, train_cfg, **kw):   # no training progress for longer than the first lease
        assert intruded.wait(timeout=120), "the lease was never renewed"
        return real_train(model_cfg, train_cfg, **kw)

    monkeypatch.setattr(store, "heartbeat", heartbeat)
    monkeypatch.setattr(dwlib.train, "train", slow)
    assert sweep.run(m, t, store=store, progress=False, lease_seconds=2.0)["status"] == "complete"
    assert intruder_claims == [False] and store.get(key)["attempts"] == 1


def test_waiting_on_a_run_that_fails_elsewhere_reports_its_error(tmp_path, tiny, monkeypatch):
    import socket
    monkeypatch.setattr(sweep, "POLL_SECONDS", 0.05)
    store = Store(tmp_path / "runs.sqlite")
    m, t = sweep.make_pair(depth=1, width=32, steps=20, **tiny)
    key = sweep.key_for(m, t)
    other = f"{socket.gethostname()}:{os.getppid()}:x"     # a live process on this host
    assert store.claim(key, {"model": to_dict(m), "train": to_dict(t)}, owner=other, lease_seconds=600)
    real_claim = store.claim

    def claim(*args, **kw):    # the holder fails just after our first (refused) claim
        ok = real_claim(*args, **kw)
        if not ok and store.get(key)["status"] == "running":
            store.fail(key, "RuntimeError: out of memory", other)
        return ok

    monkeypatch.setattr(store, "claim", claim)
    with pytest.raises(RuntimeError, match="failed in another process: RuntimeError: out of memory"):
        sweep.run(m, t, store=store, progress=False)
    assert store.get(key)["attempts"] == 1      # not retried by the waiter


def test_parallel_executor_sizes_threads_and_survives_failure(tmp_path, tiny):
    tiny = {**tiny, "threads": None}     # the executor chooses, by the one thread policy
    pairs = [sweep.make_pair(depth=1, width=32, steps=20, **tiny),
             sweep.make_pair(depth=1, width=32, steps=20, vocab_size=300, **tiny),
             sweep.make_pair(depth=2, width=32, steps=20, **tiny)]
    pairs += sweep.anneal(pairs[2:], [20 * 128, 40 * 128], warmup=2)     # a trunk and its branch: one task
    frame = sweep.run_sweep(pairs, store=tmp_path / "runs.sqlite", executor="parallel", workers=2,
                            progress=False)
    assert frame["status"].tolist() == ["complete", "failed", "complete", "complete", "complete"]
    assert Store(tmp_path / "runs.sqlite").get(frame["run_key"][3])["result"]["resumed_from_step"] == 16
    threads = default_threads(side_by_side=2)
    cpu_devices = [d for d in frame["device"].dropna() if d.startswith("cpu")]   # a GPU name has no threads
    assert all(f"{threads} threads" in d for d in cpu_devices)
    # same runs, in-process: all cached, nothing trained
    again = sweep.run_sweep(pairs[::2], store=tmp_path / "runs.sqlite", progress=False)
    assert again["attempts"].tolist() == [1, 1, 1]


@pytest.mark.parametrize("executor", ["local", "parallel"])
def test_a_store_that_cannot_be_written_stops_the_sweep(tmp_path, tiny, read_only, executor):
    path = tmp_path / "runs.sqlite"
    sweep.run_sweep([sweep.make_pair(depth=1, width=32, steps=10, **tiny)], store=path, progress=False)
    read_only(path)
    pairs = sweep.grid([1, 2], [32], steps=10, **tiny)     # depth 1 is cached, depth 2 needs the store
    with pytest.raises(StoreError, match="runs.sqlite"):
        sweep.run_sweep(pairs, store=path, executor=executor, workers=1, progress=False)


def spawned_workers(parent=None, marker="spawn_main"):
    """PIDs of a process's multiprocessing workers (by default this one's; marker="resource_tracker"
    for its resource tracker), read from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == (parent or os.getpid()) and marker in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def alive(pid):
    """True while `pid` runs; a zombie (dead, not yet reaped by its new parent) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc")
def test_workers_exit_when_the_parallel_sweep_is_killed(tmp_path, corpus):
    store = Store(tmp_path / "runs.sqlite")
    argv = [sys.executable, "-m", "dwlib", "sweep", "--executor", "parallel", "--workers", "2",
            "--depths", "1,2", "--widths", "32", "--steps", "200000", "--context", "32", "--head-dim", "16",
            "--batch-size", "4", "--eval-every", "1000", "--eval-batches", "1", "--corpus", corpus,
            "--store", str(store.path), "--quiet"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    workers = []
    try:
        deadline = time.monotonic() + 120
        while (store.runs_frame()["status"] == "running").sum() < 2:   # both workers are training
            assert proc.poll() is None, f"sweep ended before it could be killed:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "the workers never started their runs"
            time.sleep(0.05)
        workers = spawned_workers(proc.pid)
        trackers = spawned_workers(proc.pid, "resource_tracker")
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers + trackers):
            assert time.monotonic() < deadline, "workers outlived their killed parent"
            time.sleep(0.05)
    finally:
        for pid in workers:   # never leave a hog behind when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc")
def test_parallel_sweep_survives_a_killed_worker_and_rerun_resumes(tmp_path, tiny):
    import threading
    import warnings
    store = Store(tmp_path / "runs.sqlite")
    pairs = sweep.grid([1, 2], [32], steps=300, **{**tiny, "threads": None})
    ckpts = [store.checkpoint_path(sweep.key_for(*p)) for p in pairs]
    result = {}

    def background():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["frame"] = sweep.run_sweep(pairs, store=store, executor="parallel", workers=2, progress=False)
        result["warnings"] = [str(w.message) for w in caught]

    thread = threading.Thread(target=background)
    thread.start()
    deadline = time.monotonic() + 120
    while not any(sweep.checkpoint_step(c) >= 20 for c in ckpts):
        assert thread.is_alive() and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    workers = spawned_workers()
    assert workers
    os.kill(workers[0], signal.SIGKILL)          # as the OOM killer would
    thread.join(timeout=120)
    assert not thread.is_alive()
    lost = result["frame"].attrs["lost"]
    assert lost and all("worker process died" in line for line in lost)
    assert any("failed before reaching the store" in w for w in result["warnings"])
    assert set(store.runs_frame()["status"]) <= {"complete", "interrupted"}

    # resume what the crash interrupted, in-process with one thread (threads is execution-only: same runs)
    frame = sweep.run_sweep(sweep.grid([1, 2], [32], steps=300, **tiny), store=store, progress=False)
    assert frame["status"].tolist() == ["complete", "complete"]
    resumed = [store.get(k)["result"]["resumed_from_step"] for k in frame["run_key"]]
    assert max(resumed) >= 20


def test_checkpoint_dir_holds_checkpoints_and_forks_of_a_local_sweep(tmp_path, tiny, monkeypatch):
    """checkpoint_dir (--checkpoint-dir) moves checkpoints and cooldown forks away from the store."""
    import dwlib.train
    pairs = sweep.anneal(sweep.grid([1], [32], **tiny), [20 * 128, 40 * 128], warmup=2)   # a trunk, a branch
    store, folder = Store(tmp_path / "store" / "runs.sqlite"), tmp_path / "elsewhere"
    saved, real = [], dwlib.train.save_checkpoint
    monkeypatch.setattr(dwlib.train, "save_checkpoint", lambda location, *a: (saved.append(location), real(location, *a)))
    frame = sweep.run_sweep(pairs, store=store, progress=False, checkpoint_dir=folder)
    keys = frame["run_key"].tolist()
    assert frame["status"].tolist() == ["complete", "complete"]
    assert store.get(keys[0])["result"]["resumed_from_step"] == 16         # from its fork, in the folder
    assert set(saved) == {str(folder / f"{k}.pt") for k in keys}              # trunk's own and the fork
    assert store.get(keys[1])["checkpoint"] == str(folder / f"{keys[1]}.pt")
    assert list(folder.iterdir()) == [] and not (store.path.parent / "checkpoints").exists()


def test_bad_sweep_arguments(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        sweep.run_sweep(sweep.grid([1], [32]), store=tmp_path / "s.sqlite", executor="dask")
    with pytest.raises(ValueError, match="pairs"):
        sweep.run_sweep([ModelConfig()], store=tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match="workers"):
        sweep.run_sweep(sweep.grid([1], [32]), store=tmp_path / "s.sqlite", workers=0)


# -- real processes: SIGKILL mid-sweep, and two sweeps into one store --------------------------

SWEEP_SCRIPT = textwrap.dedent("""
    import glob, json, os, sys, time
    import torch
    torch.set_num_threads(1)
    import dwlib.train
    from dwlib import sweep
    from dwlib.config import model_config_from_dict, train_config_from_dict

    pairs_file, store_path, log_path = sys.argv[1:4]
    go = sys.argv[4] if len(sys.argv) > 4 else None
    pairs = [(model_config_from_dict(m), train_config_from_dict(t)) for m, t in json.load(open(pairs_file))]
    real, started = dwlib.train.train, []
    def logged(model_cfg, train_cfg, **kw):      # one line per training actually started
        with open(log_path, "a") as f:
            f.write(json.dumps([model_cfg.depth, model_cfg.width, train_cfg.steps]) + "\\n")
        if go and not started:                   # hold the first run until the other process trains one too
            started.append(True)
            open(go + ".training." + str(os.getpid()), "w").close()
            deadline = time.time() + 60
            while len(glob.glob(go + ".training.*")) < 2 and time.time() < deadline:
                time.sleep(0.01)
        return real(model_cfg, train_cfg, **kw)
    dwlib.train.train = logged
    save = dwlib.train.save_checkpoint
    def held(path, key, model, optimizer, state):   # HOLD=key:step: stay at that checkpoint until killed
        save(path, key, model, optimizer, state)
        if os.environ.get("HOLD") and os.environ["HOLD"].split(":") == [key, str(state["step"])]:
            time.sleep(3600)
    dwlib.train.save_checkpoint = held
    if go:                                       # a start line shared by several processes
        open(go + ".ready." + str(os.getpid()), "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)
    frame = sweep.run_sweep(pairs, store=store_path, progress=False)
    print(json.dumps(frame["status"].tolist()))
""")


def start_sweep(tmp_path, pairs, store, log, go=None, hold=None):
    """The sweep of `pairs` in a new process. go: a file path; the process waits for it to exist before
    sweeping, and holds its first run until another process started with the same `go` trains one.
    hold: (run key, step); that run stops after saving its checkpoint at that step until killed."""
    script = tmp_path / "sweep_script.py"
    script.write_text(SWEEP_SCRIPT)
    pairs_file = tmp_path / "pairs.json"
    pairs_file.write_text(json.dumps([[to_dict(m), to_dict(t)] for m, t in pairs]))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HOLD": ":".join(map(str, hold or ()))}
    args = [sys.executable, str(script), str(pairs_file), str(store), str(log)] + ([str(go)] if go else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc, ready, what):
    """SIGKILL `proc` once ready() is true (it is held there: see start_sweep); kill it anyway on failure."""
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert proc.poll() is None, f"the sweep ended before it could be killed:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def logged_runs(log):
    return [tuple(json.loads(line)) for line in Path(log).read_text().splitlines()] if Path(log).exists() else []


def test_sigkill_mid_sweep_then_rerun_resumes(tmp_path, tiny, monkeypatch):
    store = Store(tmp_path / "runs.sqlite")
    a = sweep.make_pair(depth=1, width=32, steps=20, **tiny)
    b = sweep.make_pair(depth=2, width=32, steps=300, **tiny)     # long enough to be killed mid-run
    c = sweep.make_pair(depth=1, width=64, steps=20, **tiny)
    key_a, key_b, key_c = (sweep.key_for(*p) for p in (a, b, c))
    ckpt_b = store.checkpoint_path(key_b)

    # killed once run a is stored and run b has checkpointed twice (b holds there)
    proc = start_sweep(tmp_path, [a, b, c], store.path, tmp_path / "killed.log", hold=(key_b, 20))
    kill_when(proc, lambda: sweep.checkpoint_step(ckpt_b) == 20, "run b's checkpoint at step 20")
    killed_at = sweep.checkpoint_step(ckpt_b)
    assert killed_at == 20 and store.get(key_a)["status"] == "complete"
    assert logged_runs(tmp_path / "killed.log") == [(1, 32, 20), (2, 32, 300)]
    status = dict(zip(store.runs_frame()["run_key"], store.runs_frame()["status"]))
    assert status == {key_a: "complete", key_b: "interrupted"}     # b is not recorded complete
    updated_a = store.get(key_a)["updated"]

    # rerun the same sweep: b resumes from its checkpoint at once (its holder is dead), c trains
    calls = count_training(monkeypatch)
    frame = sweep.run_sweep([a, b, c], store=store, progress=False)
    assert frame["status"].tolist() == ["complete"] * 3
    assert [(d, w) for d, w, _ in calls] == [(2, 32), (1, 64)]          # a was not retrained
    assert store.get(key_a)["updated"] == updated_a and store.get(key_a)["attempts"] == 1
    result_b = store.get(key_b)["result"]
    assert store.get(key_b)["attempts"] == 2 and result_b["resumed_from_step"] >= killed_at
    assert result_b["steps"] == 300 and not ckpt_b.exists()

    # resuming changed nothing: b's losses equal an uninterrupted run's
    fresh = sweep.run(*b, store=tmp_path / "fresh" / "runs.sqlite", progress=False)
    assert fresh["resumed_from_step"] == 0
    assert result_b["val_loss"] == pytest.approx(fresh["val_loss"], rel=1e-5)


def test_two_processes_sweeping_one_store_train_each_run_once(tmp_path, tiny):
    store = Store(tmp_path / "runs.sqlite")
    pairs = sweep.grid([1, 2], [32, 64], steps=40, **tiny)
    go = tmp_path / "go"
    procs = [start_sweep(tmp_path, pairs, store.path, tmp_path / f"p{i}.log", go) for i in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < 2:   # both imported torch: start them together
        assert all(p.poll() is None for p in procs), procs[0].stderr.read() + procs[1].stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == ["complete"] * 4   # each saw every result
    trained = [logged_runs(tmp_path / f"p{i}.log") for i in range(2)]
    assert sorted(trained[0] + trained[1]) == sorted((m.depth, m.width, 40) for m, _ in pairs)
    assert trained[0] and trained[1]          # they really did share the work (start_sweep's `go` sees to it)
    frame = store.runs_frame()
    assert frame["attempts"].tolist() == [1] * 4 and frame["status"].tolist() == ["complete"] * 4
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


# -- cooldown branches --------------------------------------------------------------------------

def test_anneal_design_and_its_cost(tiny):
    pairs = sweep.grid([1, 2], [32], steps=50, **tiny)
    per_step = 4 * 32
    annealed = sweep.anneal(pairs, [80 * per_step, 240 * per_step, 160 * per_step], cooldown=0.2)
    assert len(annealed) == 6
    assert [steps_for_budget(m, t) for m, t in annealed[:3]] == [80, 160, 240]   # budgets sorted
    assert {(t.schedule, t.cooldown, t.warmup) for _, t in annealed} == {("wsd-sqrt", 0.2, 4)}   # 5% of 80 steps
    assert sweep.branch_groups(annealed) == [[2, 1, 0], [5, 4, 3]]                # largest budget first
    cost = sweep.anneal_cost(annealed)
    # per shape: the 240-step trunk, plus the cooldowns of the 80- and 160-step branches (16 and 32 steps)
    assert cost == dict(runs=6, trunks=2, tokens_branched=2 * (240 + 16 + 32) * per_step,
                        tokens_separate=2 * (80 + 160 + 240) * per_step)
    # runs that cannot share a trunk are counted whole both ways
    cosine = sweep.grid([1], [32], steps=80, **tiny) + sweep.grid([1], [32], steps=160, **tiny)
    assert sweep.branch_groups(cosine) == [[0], [1]]
    assert sweep.anneal_cost(cosine)["tokens_branched"] == sweep.anneal_cost(cosine)["tokens_separate"]
    with pytest.raises(ValueError, match="before the 50-step warmup ends"):
        sweep.anneal(pairs, [10 * per_step, 100 * per_step], warmup=50)
    with pytest.raises(ValueError, match="warmup-stable-decay"):
        sweep.anneal(pairs, [1e4], schedule="cosine")


def test_sigkill_in_a_trunk_and_in_a_branch_then_rerun_resumes_each(tmp_path, tiny):
    per_step = 4 * 32
    pairs = sweep.anneal(sweep.grid([1], [32], **tiny), [80 * per_step, 160 * per_step, 240 * per_step],
                         cooldown=0.5, warmup=5)
    small, middle, trunk = pairs                         # decay starts at steps 40, 80, 120
    assert [sweep.fork_step(*p) for p in pairs] == [40, 80, 120]
    store = Store(tmp_path / "runs.sqlite")
    keys = [sweep.key_for(*p) for p in pairs]
    ckpt = {k: store.checkpoint_path(k) for k in keys}

    def sweep_until(key, step):   # held at that run's checkpoint at that step, then killed
        proc = start_sweep(tmp_path, pairs, store.path, tmp_path / "anneal.log", hold=(key, step))
        kill_when(proc, lambda: sweep.checkpoint_step(ckpt[key]) == step, f"the checkpoint at step {step}")

    # 1: killed while the trunk trains, past both forks (steps 40 and 80)
    sweep_until(keys[2], 90)
    assert sweep.checkpoint_step(ckpt[keys[0]]) == 40 and sweep.checkpoint_step(ckpt[keys[1]]) == 80
    # 2: the trunk resumes and finishes; killed in the middle branch's cooldown
    sweep_until(keys[1], 100)
    assert store.get(keys[2])["status"] == "complete"
    assert store.get(keys[1])["status"] == "running" and store.get(keys[0]) is None   # not reached yet
    assert sweep.checkpoint_step(ckpt[keys[0]]) == 40                                   # its fork is waiting
    # 3: in-process, to the end
    frame = sweep.run_sweep(pairs, store=store, progress=False)
    assert frame["status"].tolist() == ["complete"] * 3 and len(store.runs_frame()) == 3
    results = [store.get(k)["result"] for k in keys]
    assert results[2]["resumed_from_step"] >= 90           # the trunk, from its own checkpoint
    assert results[1]["resumed_from_step"] >= 100          # the branch, from its cooldown checkpoint
    assert results[0]["resumed_from_step"] == 40           # the smallest, from its fork: cooldown only
    assert not any(p.exists() for p in ckpt.values())

    # the same losses as an uninterrupted sweep, and as training each budget on its own
    fresh = sweep.run_sweep(pairs, store=tmp_path / "fresh" / "runs.sqlite", progress=False)
    assert fresh["val_loss"].tolist() == pytest.approx([r["val_loss"] for r in results], abs=1e-6)
    alone = sweep.run(*small, store=tmp_path / "alone" / "runs.sqlite", progress=False)
    assert alone["resumed_from_step"] == 0 and alone["val_loss"] == pytest.approx(results[0]["val_loss"], abs=1e-6)


FROZEN_SWEEP = textwrap.dedent("""
    import json, sys
    from dwlib import sweep
    from dwlib.config import model_config_from_dict, train_config_from_dict
    model, train = json.load(open(sys.argv[1]))
    pair = (model_config_from_dict(model), train_config_from_dict(train))
    frame = sweep.run_sweep([pair], store=sys.argv[2], progress=False, lease_seconds=float(sys.argv[3]))
    print(json.dumps(frame["status"].tolist()))
""")


def test_a_frozen_lease_holder_stops_its_run_and_writes_nothing_more(tmp_path, tiny):
    """issue 25 item 4: a sweep frozen (SIGSTOP) past its lease, whose run another sweep takes over and
    finishes, must not train on after SIGCONT nor re-create the checkpoint the other one deleted."""
    lease = 3.0
    store = Store(tmp_path / "runs.sqlite")
    pair = sweep.make_pair(depth=1, width=32, steps=2000, **{**tiny, "checkpoint_every": 50, "eval_every": 500})
    key = sweep.key_for(*pair)
    ckpt = store.checkpoint_path(key)
    script, pair_file = tmp_path / "frozen.py", tmp_path / "pair.json"
    script.write_text(FROZEN_SWEEP)
    pair_file.write_text(json.dumps([to_dict(pair[0]), to_dict(pair[1])]))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(pair_file), str(store.path), str(lease)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sweep.checkpoint_step(ckpt) < 50:
            assert proc.poll() is None, f"the sweep ended before it was frozen:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        frozen_at = sweep.checkpoint_step(ckpt)
        time.sleep(lease + 1)                          # its lease lapses
        frame = sweep.run_sweep([pair], store=store, progress=False, lease_seconds=lease)   # takes it over
        taken = store.get(key)
        assert frame["status"].tolist() == ["complete"] and taken["attempts"] == 2
        assert taken["result"]["resumed_from_step"] >= frozen_at and not ckpt.exists()
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == ["complete"]   # it reports the other sweep's result
    assert "taken over" not in err                                    # it did not train the run to the end
    assert list(ckpt.parent.iterdir()) == []                          # no orphan checkpoint, no partial file
    assert store.get(key)["updated"] == taken["updated"] and store.get(key)["attempts"] == 2
    print(f"\nfrozen at step {frozen_at} for {lease + 1:.0f} s (lease {lease:.0f} s); the other sweep resumed "
          f"from step {taken['result']['resumed_from_step']} and stored the run; after SIGCONT the frozen sweep "
          f"exited {proc.returncode} reporting {out.strip()} with nothing written")
