"""Sweeps through Slurm (`executor="slurm"`), tested without a cluster on submitit's local backend: each
job a real subprocess started by submitit, with the same pickling and result path as on Slurm. Only the
driver opens the store; a job killed mid-run is resubmitted and resumes from its checkpoint; Ctrl-C of
the driver cancels its jobs and leaves the runs resumable; bad options are refused before anything is
submitted. Jobs are held at a chosen checkpoint (see HOOK) rather than racing their speed."""
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dwlib import sweep
from dwlib.__main__ import main
from dwlib.store import Store

try:
    import submitit  # noqa: F401
except ImportError:   # optional for users (requirements-slurm.txt); CI installs it and must run these
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        raise
    pytest.skip("submitit is optional and not installed: pip install -r requirements-slurm.txt",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
TINY = dict(context=32, head_dim=16, batch_size=4, eval_every=10, eval_batches=2, checkpoint_every=10,
            device="cpu")

# sitecustomize of every Python process the test starts; it acts only in submitit's job processes.
# DWLIB_TEST_HOLD=step[:key]: a run stays at its checkpoint of that step (writing its pid into
# DWLIB_TEST_PIDS) until killed; a resumed run saves later steps only, so it is not held again.
# DWLIB_TEST_NO_STORE: a job that opens any SQLite database fails.
HOOK = textwrap.dedent("""
    import os, sys
    if "submitit.core._submit" in sys.orig_argv:
        if os.environ.get("DWLIB_TEST_NO_STORE"):
            import sqlite3
            def refuse(*args, **kw):
                raise RuntimeError("a Slurm job opened the results store")
            sqlite3.connect = refuse
        if os.environ.get("DWLIB_TEST_HOLD"):
            import time
            import dwlib.train
            step, _, key = os.environ["DWLIB_TEST_HOLD"].partition(":")
            save = dwlib.train.save_checkpoint
            def held(location, run_key, model, optimizer, state):
                save(location, run_key, model, optimizer, state)
                if state["step"] == int(step) and key in ("", run_key):
                    open(os.path.join(os.environ["DWLIB_TEST_PIDS"], str(os.getpid())), "w").close()
                    time.sleep(3600)
            dwlib.train.save_checkpoint = held
""")


@pytest.fixture
def jobs_env(tmp_path, monkeypatch):
    """Environment inherited by the jobs: dwlib from the checkout, one thread, the hook above."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("PYTHONPATH", f"{hook}{os.pathsep}{REPO}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("DWLIB_TEST_PIDS", str(pids))
    return pids


@pytest.fixture
def corpus(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = tmp_path / "small.txt"
    path.write_text((stdlib / "textwrap.py").read_text() * 3)
    return f"file:{path}"


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def held_jobs(pids, count, what, deadline=180):
    """The pids of `count` jobs held at their checkpoint (see HOOK)."""
    end = time.monotonic() + deadline
    while len(list(pids.iterdir())) < count:
        assert time.monotonic() < end, f"{what} never happened"
        time.sleep(0.05)
    return [int(p.name) for p in pids.iterdir()]


def test_a_slurm_sweep_stores_every_run_once_and_jobs_never_open_the_store(tmp_path, corpus, jobs_env, monkeypatch):
    monkeypatch.setenv("DWLIB_TEST_NO_STORE", "1")
    tiny = dict(TINY, corpus=corpus)
    pairs = sweep.grid([1, 2], [32], steps=20, **tiny)
    pairs.append(sweep.make_pair(depth=1, width=32, steps=20, vocab_size=300, **tiny))         # fails
    pairs += sweep.anneal(sweep.grid([1], [32], **tiny), [20 * 128, 40 * 128], warmup=2)    # a trunk, a branch
    store, logs, checkpoints = Store(tmp_path / "runs.sqlite"), tmp_path / "logs", (tmp_path / "ckpt").as_uri()
    options = dict(backend="local", logs=logs, array_parallelism=2, partition="debug", mem_per_run="1G")
    t0 = time.perf_counter()
    frame = sweep.run_sweep(pairs, store=store, executor="slurm", slurm=options, progress=False,
                            checkpoint_dir=checkpoints)
    wall = time.perf_counter() - t0
    assert frame["status"].tolist() == ["complete", "complete", "failed", "complete", "complete"]
    assert "vocab" in frame.loc[2, "error"] and "store" not in frame.loc[2, "error"]
    assert len(store.keys()) == len(pairs) and frame["attempts"].tolist() == [1] * len(pairs)
    branch = store.get(frame["run_key"][3])["result"]
    assert branch["steps"] == 20 and branch["resumed_from_step"] == 16        # only its cooldown, from its fork
    assert not store.grad_norms_frame().empty and list((tmp_path / "ckpt").iterdir()) == []
    assert all("1 threads" in d for d in frame["device"].dropna())
    job_logs = sorted(p.name for p in logs.glob("*/*_log.out"))
    assert len(job_logs) == len(pairs)                                         # one job per run, logs in `logs`
    print(f"\nslurm (local backend): {len(pairs)} runs, {len(store.keys())} stored once each "
          f"(attempts {frame['attempts'].tolist()}), {wall:.1f} s, logs {len(job_logs)} jobs in {logs.name}/")
    again = sweep.run_sweep(pairs, store=store, executor="slurm", slurm=options, progress=False,
                            checkpoint_dir=checkpoints)
    assert again["attempts"].tolist() == [1, 1, 2, 1, 1]                       # only the failed run again


def test_a_killed_job_is_resubmitted_and_resumes_from_its_checkpoint(tmp_path, corpus, jobs_env, monkeypatch):
    tiny = dict(TINY, corpus=corpus)
    long = sweep.make_pair(depth=2, width=32, steps=60, **tiny)
    short = sweep.make_pair(depth=1, width=32, steps=30, **tiny)
    key = sweep.key_for(*long)
    monkeypatch.setenv("DWLIB_TEST_HOLD", f"20:{key}")
    store, checkpoints = Store(tmp_path / "runs.sqlite"), tmp_path / "ckpt"
    result = {}
    thread = threading.Thread(target=lambda: result.update(frame=sweep.run_sweep(
        [long, short], store=store, executor="slurm", slurm=dict(backend="local", logs=tmp_path / "logs"),
        progress=False, checkpoint_dir=checkpoints)))
    thread.start()
    try:
        pid, = held_jobs(jobs_env, 1, "the long run's checkpoint at step 20")
        assert sweep.checkpoint_step(checkpoints / f"{key}.pt") == 20
        os.kill(pid, signal.SIGKILL)            # as a node failure or the OOM killer would
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive()
    assert result["frame"]["status"].tolist() == ["complete", "complete"] and len(store.keys()) == 2
    record = store.get(key)["result"]
    # resubmitted under the driver's one claim; it resumed from the checkpoint, not from step 0
    assert record["resumed_from_step"] == 20 and record["steps"] == 60 and store.get(key)["attempts"] == 1
    assert not (checkpoints / f"{key}.pt").exists()
    print(f"\nkilled job pid {pid} at its checkpoint of step 20; the resubmitted job resumed from step "
          f"{record['resumed_from_step']}; {len(store.keys())} runs stored, attempts {store.get(key)['attempts']}")


def test_ctrl_c_of_the_driver_cancels_its_jobs_and_leaves_the_runs_resumable(tmp_path, corpus, jobs_env, monkeypatch):
    monkeypatch.setenv("DWLIB_TEST_HOLD", "20")
    store = Store(tmp_path / "runs.sqlite")
    argv = ["sweep", "--executor", "slurm", "--slurm-backend", "local", "--slurm-logs", str(tmp_path / "logs"),
            "--store", str(store.path), "--quiet", "--depths", "1,2", "--widths", "32", "--steps", "60",
            "--context", "32", "--head-dim", "16", "--batch-size", "4", "--eval-every", "10", "--eval-batches", "2",
            "--corpus", corpus, "--device", "cpu", "--vary", "checkpoint_every=10"]   # it has no flag of its own
    proc = subprocess.Popen([sys.executable, "-m", "dwlib", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pids = held_jobs(jobs_env, 2, "both runs at their checkpoint of step 20")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)   # a hang guard: the drain after SIGINT took > 60 s under a full suite once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err, err
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids):      # cancelled: no job trains on after its driver
        assert time.monotonic() < deadline, "the jobs outlived the interrupted driver"
        time.sleep(0.1)
    before = store.runs_frame()
    assert before["status"].tolist() == ["interrupted", "interrupted"]   # released: resumable at once
    for child in jobs_env.iterdir():
        child.unlink()
    monkeypatch.delenv("DWLIB_TEST_HOLD")
    assert main(argv) == 0                                               # the rerun resumes both
    after = store.runs_frame()
    resumed = [store.get(k)["result"]["resumed_from_step"] for k in after["run_key"]]
    assert after["status"].tolist() == ["complete", "complete"] and resumed == [20, 20]
    assert after["attempts"].tolist() == [2, 2]
    print(f"\nSIGINT: driver exit {proc.returncode}, {len(pids)} jobs cancelled, runs {before['status'].tolist()}; "
          f"the rerun resumed them from steps {resumed}")


def test_bad_slurm_options_are_refused_before_anything_is_submitted(tmp_path, capsys):
    pairs = sweep.grid([1], [32], steps=5)
    cuda = sweep.grid([1], [32], steps=5, device="cuda")
    store, logs = tmp_path / "s.sqlite", tmp_path / "logs"
    bad = [(dict(partition="gpu partition"), pairs, None, "partition .* must be a Slurm partition name"),
           (dict(partition="gpu;rm"), pairs, None, "partition"),
           (dict(time_limit="an hour"), pairs, None, "time_limit .* takes minutes"),
           (dict(time_limit=0), pairs, None, "more than zero"),
           (dict(mem_per_run="lots"), pairs, None, "mem_per_run .* takes a size"),
           (dict(sbatch_args="-A lab"), pairs, None, "sbatch_args .* long sbatch options"),
           (dict(array_parallelism=0), pairs, None, "array_parallelism .* positive integer"),
           (dict(colour="red"), pairs, None, "unknown Slurm option"),
           (dict(backend="pbs"), pairs, None, "backend must be one of"),
           (dict(), cuda, 0, r"gpus_per_run .* is 0, but the runs train on device 'cuda'"),
           (dict(), pairs, 0.5, "whole number of GPUs"),
           (dict(backend="slurm"), pairs, None, "sbatch is not on PATH")]   # this machine has no Slurm
    for options, design, gpus, message in bad:
        with pytest.raises(ValueError, match=message):
            sweep.run_sweep(design, store=store, executor="slurm", gpus_per_run=gpus,
                            slurm=dict(dict(backend="local", logs=logs), **options))
    with pytest.raises(ValueError, match="NAME=VALUE"):
        sweep.run_sweep(pairs, store=store, executor="slurm:partition")
    assert not store.exists() and not logs.exists()                  # nothing opened, nothing submitted
    assert main(["sweep", "--executor", "slurm", "--slurm-backend", "local", "--device", "cuda", "--gpus-per-run",
                 "0", "--steps", "5", "--store", str(store)]) == 2
    assert "error: gpus_per_run (--gpus-per-run) is 0" in capsys.readouterr().err
    assert main(["sweep", "--executor", "slurm", "--slurm-backend", "local", "--partition", "a b", "--steps", "5",
                 "--store", str(store)]) == 2
    assert "error: partition (--partition) must be" in capsys.readouterr().err
    assert not store.exists() and not logs.exists()
    # a notebook's executor carries the options in its name
    assert sweep._parse_spec("partition=gpu,time_limit=120,gpus_per_run=1") == dict(
        partition="gpu", time_limit=120, gpus_per_run=1)
