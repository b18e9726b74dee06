"""Sweeps through Ray on a two-node cluster started on this machine (`ray.cluster_utils.Cluster`: each
node its own raylet, object store and worker processes). Only the driver opens the store; checkpoints
go to a `file://` URI both nodes reach; a worker killed mid-run resumes from its checkpoint; a driver
interrupted with SIGINT and rerun trains only what is missing. Ray is optional for users
(`pip install -r requirements-ray.txt`): these tests skip without it, except under CI=true, where Ray
is installed and a missing one is a failure. Starting the cluster costs ~15 s, so it is shared."""
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from dwlib import sweep
from dwlib.store import Store, StoreError

REPO = Path(__file__).resolve().parents[1]
# one CPU and no GPU per task unless a test asks for one; device cpu even on a machine with CUDA
TINY = dict(context=32, head_dim=16, batch_size=4, eval_every=10, eval_batches=2, checkpoint_every=10,
            device="cpu")


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node (2 CPUs and 1 GPU — a pretend one, which a CPU run ignores — so fractional GPUs can be
    packed) and a second node (1 CPU). Its processes inherit this environment: dwlib from the checkout,
    one thread each."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        reason = "Ray is optional and not installed: pip install -r requirements-ray.txt"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{reason} (CI=true: CI installs it and must run the Ray sweeps)")
        pytest.skip(reason)
    saved = dict(os.environ)
    os.environ.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DWLIB_THREADS="1")
    small = dict(object_store_memory=100 * 2**20, include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=2, num_gpus=1, **small))
    try:
        cluster.add_node(num_cpus=1, num_gpus=0, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def corpus(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = tmp_path / "small.txt"
    path.write_text((stdlib / "textwrap.py").read_text() * 3)
    return f"file:{path}"


def connect(cluster, **kw):
    import ray
    ray.shutdown()
    ray.init(address=cluster.address, log_to_driver=False, **kw)
    return ray


def ray_tasks():
    """{pid: title} of this test's Ray workers (the cluster's processes descend from this one) that are
    running a dwlib run now: their process title is ray::dwlib-<run id>."""
    tasks = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if title.startswith("ray::dwlib-") and descends_from_us(int(proc.name)):
                tasks[int(proc.name)] = title
        except (OSError, ValueError, IndexError):
            continue
    return tasks


def descends_from_us(pid):
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if pid == os.getpid():
            return True
    return False


def hold_at(step, key=None):
    """A worker setup hook: the run `key` (any run if None) stays at its checkpoint of `step` after saving
    it, until killed or cancelled, so the test acts on a known state instead of racing the run's speed.
    A resumed run saves later steps only, so it is not held again."""
    def hook():
        import time
        import dwlib.train
        save = dwlib.train.save_checkpoint

        def held(location, run_key, model, optimizer, state):
            save(location, run_key, model, optimizer, state)
            if state["step"] == step and key in (None, run_key):
                time.sleep(3600)

        dwlib.train.save_checkpoint = held
    return hook


def test_a_two_node_sweep_stores_every_run_once_and_workers_never_open_sqlite_or_the_corpus(
        ray_cluster, corpus, tmp_path):
    def no_store_no_corpus():   # runs first in every worker process of this job, on both nodes
        import sqlite3
        import dwlib.data
        import dwlib.train

        def refuse(*args, **kw):
            raise RuntimeError("a Ray worker touched the results store or the corpus")

        sqlite3.connect = dwlib.data.load_tokens = dwlib.train.load_tokens = refuse

    ray = connect(ray_cluster, runtime_env={"worker_process_setup_hook": no_store_no_corpus})
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]

    @ray.remote(num_cpus=1)
    def open_a_store():
        import sqlite3
        try:
            sqlite3.connect(":memory:")
            return "opened"
        except RuntimeError as e:
            return str(e)

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    probes = [open_a_store.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
              for n in nodes]
    assert len(nodes) == 2 and ray.get(probes) == ["a Ray worker touched the results store or the corpus"] * 2

    @ray.remote(num_cpus=1)
    def tokens_in_a_task(tokens):
        return type(tokens.train).__name__, tokens.train.flags.writeable

    # the token arrays reach a task as read-only views of its node's shared memory, not as copies
    shared = sweep._Ray(None, 0, 1, 0, None).share(sweep.load_tokens(corpus, "byte"))
    assert ray.get(tokens_in_a_task.remote(shared)) == ("ndarray", False)

    tiny = dict(TINY, corpus=corpus)
    pairs = sweep.grid([1, 2], [32], steps=20, **tiny)
    pairs.append(sweep.make_pair(depth=1, width=32, steps=20, lr=1e6, **tiny))                # diverges
    pairs.append(sweep.make_pair(depth=1, width=32, steps=20, vocab_size=300, **tiny))        # fails
    pairs += sweep.anneal(sweep.grid([1], [32], **tiny), [20 * 128, 40 * 128], warmup=2)   # a trunk, a branch
    store = Store(tmp_path / "runs.sqlite")
    checkpoints = tmp_path / "ckpt"
    frame = sweep.run_sweep(pairs, store=store, executor="ray", progress=False, gpus_per_run=0,
                            checkpoint_dir=checkpoints.as_uri())
    assert frame["status"].tolist() == ["complete", "complete", "diverged", "failed", "complete", "complete"]
    assert "vocab" in frame.loc[3, "error"]
    # every run stored exactly once, by one claim; the branch trained only its cooldown, from its fork
    assert len(store.keys()) == len(pairs) and frame["attempts"].tolist() == [1] * len(pairs)
    branch = store.get(frame["run_key"][4])["result"]
    assert branch["steps"] == 20 and branch["resumed_from_step"] == 16
    # the driver stored the full records: curves and gradient norms
    assert set(store.curves_frame()["depth"]) == {1, 2} and not store.grad_norms_frame().empty
    assert store.get(frame["run_key"][0])["checkpoint"] == f"{checkpoints.as_uri()}/{frame['run_key'][0]}.pt"
    assert [p.name for p in checkpoints.iterdir()] == []       # deleted once stored
    assert all("1 threads" in d for d in frame["device"].dropna())   # one CPU per task: one torch thread
    print(f"\nray sweep: {len(nodes)} nodes, {len(pairs)} runs, {len(store.keys())} stored, statuses "
          f"{frame['status'].value_counts().to_dict()}")
    again = sweep.run_sweep(pairs, store=store, executor="ray", progress=False, gpus_per_run=0,
                            checkpoint_dir=checkpoints.as_uri())
    assert again["attempts"].tolist() == [1, 1, 1, 2, 1, 1]   # only the failed run was tried again
    assert again["updated"].tolist()[:3] == frame["updated"].tolist()[:3]


def test_a_worker_killed_mid_run_is_resubmitted_and_resumes_from_its_checkpoint(ray_cluster, corpus, tmp_path):
    tiny = dict(TINY, corpus=corpus)
    long, short = sweep.make_pair(depth=2, width=32, steps=60, **tiny), sweep.make_pair(depth=1, width=32, steps=30, **tiny)
    key = sweep.key_for(*long)
    connect(ray_cluster, runtime_env={"worker_process_setup_hook": hold_at(20, key)})
    store = Store(tmp_path / "runs.sqlite")
    checkpoints = (tmp_path / "ckpt").as_uri()
    location = sweep.checkpoint_location(store, key, checkpoints)
    result = {}
    thread = threading.Thread(target=lambda: result.update(frame=sweep.run_sweep(
        [long, short], store=store, executor="ray", progress=False, gpus_per_run=0, checkpoint_dir=checkpoints)))
    thread.start()
    pids = []
    try:
        deadline = time.monotonic() + 180
        while not (sweep.checkpoint_step(location) == 20 and pids):   # held there: see hold_at
            assert thread.is_alive() and time.monotonic() < deadline, "the long run never reached step 20"
            pids = [pid for pid, title in ray_tasks().items() if title == f"ray::dwlib-{key[:10]}"]
            time.sleep(0.02)
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)                 # as the OOM killer or a lost node would
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive()
    frame = result["frame"]
    assert frame["status"].tolist() == ["complete", "complete"] and len(store.keys()) == 2
    record = store.get(key)["result"]
    # Ray resubmitted the task; it resumed from the checkpoint, not from step 0, under the driver's one claim
    assert record["resumed_from_step"] == 20 and record["steps"] == 60
    assert store.get(key)["attempts"] == 1 and sweep.checkpoint_step(location) == 0
    print(f"\nkilled worker pid {pids[0]} holding the checkpoint of step 20; the resubmitted task resumed from "
          f"step {record['resumed_from_step']}; {len(store.keys())} runs stored")


def test_fractional_gpus_pack_runs_on_one_gpu(ray_cluster, corpus, tmp_path):
    """The head node has one GPU: with gpus_per_run=0.5 two runs train on it at once (CPU-only torch
    ignores the pretend GPU, so they train on the CPU: what is tested is Ray's packing). Each run waits
    for the other to start before training (for 60 s at most), so packed runs surely overlap."""
    barrier = str(tmp_path / "started")
    os.mkdir(barrier)

    def wait_for_the_other_run():
        import dwlib.train
        real = dwlib.train.train

        def train(*args, **kw):
            Path(barrier, str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            return real(*args, **kw)

        dwlib.train.train = train

    connect(ray_cluster, runtime_env={"worker_process_setup_hook": wait_for_the_other_run})
    pairs = sweep.grid([1, 2], [32], steps=20, **dict(TINY, corpus=corpus))
    result, most = {}, 0

    def background():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["frame"] = sweep.run_sweep(pairs, store=tmp_path / "runs.sqlite", executor="ray",
                                              progress=False, gpus_per_run=0.5)
        result["warnings"] = [str(w.message) for w in caught]

    thread = threading.Thread(target=background)
    thread.start()
    while thread.is_alive():
        most = max(most, len(ray_tasks()))
        time.sleep(0.02)
    thread.join()
    assert result["frame"]["status"].tolist() == ["complete", "complete"] and most == 2
    # no checkpoint_dir on a cluster of two nodes: the user is told where checkpoints go, and why it matters
    assert any(w.startswith("checkpoints go beside the store") for w in result["warnings"])


DRIVER = textwrap.dedent("""
    import sys
    import ray
    from dwlib.__main__ import main

    def hold():   # in every worker: a run stays at its checkpoint of step 100 (the first one) until stopped
        import time
        import dwlib.train
        save = dwlib.train.save_checkpoint

        def held(location, key, model, optimizer, state):
            save(location, key, model, optimizer, state)
            if state["step"] == 100:
                time.sleep(3600)

        dwlib.train.save_checkpoint = held

    ray.init(address=sys.argv[1], log_to_driver=False, runtime_env={"worker_process_setup_hook": hold})
    sys.exit(main(sys.argv[2:]))   # the command line, on the Ray connection made above
""")


def test_driver_interrupted_with_sigint_then_two_reruns_train_only_what_is_missing_once(ray_cluster, corpus, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    checkpoints = (tmp_path / "ckpt").as_uri()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # a 30-step run and a 200-step one, which checkpoints at step 100 (the default checkpoint_every) and is
    # held there
    argv = [sys.executable, str(driver), ray_cluster.address, "sweep", "--executor", "ray", "--gpus-per-run", "0",
            "--checkpoint-dir", checkpoints, "--store", str(store.path), "--quiet", "--depths", "1", "--widths", "32",
            "--vary", "steps=30,200", "--context", "32", "--head-dim", "16", "--batch-size", "4", "--eval-every", "10",
            "--eval-batches", "2", "--corpus", corpus, "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:   # interrupt once the short run is stored and the long one holds at its checkpoint
            assert proc.poll() is None, f"the sweep ended before it could be interrupted:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "the runs never got there"
            frame = store.runs_frame() if store.keys() else None
            if frame is not None and len(frame) == 2 and "complete" in set(frame["status"]):
                long_key = frame.loc[frame["steps"] == 200, "run_key"].item()
                location = sweep.checkpoint_location(store, long_key, checkpoints)
                if sweep.checkpoint_step(location) == 100:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)   # a hang guard: the drain after SIGINT took > 60 s under a full suite once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    before = store.runs_frame().set_index("steps")
    assert before.loc[30, "status"] == "complete" and before.loc[200, "status"] == "interrupted"

    # rerun by two drivers at once on the one store: one trains what is missing, the other waits for it
    reruns = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for rerun in reruns:
        assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    after = store.runs_frame().set_index("steps")
    assert after["status"].tolist() == ["complete", "complete"] and len(store.keys()) == 2
    # the finished run was not trained again; the interrupted one resumed from its checkpoint, trained by
    # one of the two drivers only (one claim each: the first driver's and one rerun's)
    assert after.loc[30, "updated"] == before.loc[30, "updated"] and after.loc[30, "attempts"] == 1
    resumed = store.get(long_key)["result"]["resumed_from_step"]
    assert after.loc[200, "attempts"] == 2 and resumed == 100
    print(f"\nSIGINT: driver exit code {proc.returncode}; two drivers rerunning at once trained only the "
          f"interrupted run, once, from step {resumed}; {len(store.keys())} runs stored")


def test_a_store_that_cannot_be_written_stops_a_ray_sweep(ray_cluster, corpus, tmp_path, read_only):
    connect(ray_cluster)
    path = tmp_path / "runs.sqlite"
    Store(path)
    read_only(path)
    with pytest.raises(StoreError, match="runs.sqlite"):
        sweep.run_sweep(sweep.grid([1], [32], steps=10, **dict(TINY, corpus=corpus)), store=path, executor="ray",
                        progress=False, gpus_per_run=0, checkpoint_dir=(tmp_path / "ckpt").as_uri())


def test_bad_ray_arguments_are_refused_before_anything_runs(tmp_path, monkeypatch):
    pairs = sweep.grid([1], [32], steps=5)
    for bad in (1.5, -1, float("nan")):
        with pytest.raises(ValueError, match=f"gpus_per_run must be 0, a fraction .* got {bad}"):
            sweep.run_sweep(pairs, store=tmp_path / "s.sqlite", executor="ray", gpus_per_run=bad)
    with pytest.raises(ValueError, match="checkpoint location 'nope://bucket' cannot be used"):
        sweep.run_sweep(pairs, store=tmp_path / "s.sqlite", executor="ray", checkpoint_dir="nope://bucket")
    monkeypatch.setitem(sys.modules, "ray", None)     # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "ray\[default\]"'):
        sweep.run_sweep(pairs, store=tmp_path / "s.sqlite", executor="ray", progress=False)
