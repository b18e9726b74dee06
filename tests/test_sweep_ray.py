"""A sweep through a local Ray instance (Ray is optional: `pip install -r requirements-ray.txt`).
Starting Ray costs ~10-20 s on a small machine, so this lives in its own file. Skips when Ray is
absent, except under CI=true, where Ray is installed and a missing one is a failure."""
import os
import sys
import sysconfig
from pathlib import Path

import pytest

from dwlib import sweep
from dwlib.store import Store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_local():
    try:
        import ray
    except ImportError:
        reason = "Ray is optional and not installed: pip install -r requirements-ray.txt"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{reason} (CI=true: CI installs it and must run the Ray sweep)")
        pytest.skip(reason)
    # workers import dwlib from the checkout even when it is not pip-installed
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_ray_sweep_on_a_local_instance(tmp_path, ray_local):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = tmp_path / "small.txt"
    corpus.write_text((stdlib / "textwrap.py").read_text() * 3)
    tiny = dict(context=32, head_dim=16, batch_size=4, eval_every=10, eval_batches=2, corpus=f"file:{corpus}")
    pairs = sweep.grid([1, 2], [32], steps=20, **tiny)
    pairs.append(sweep.make_pair(depth=1, width=32, steps=20, lr=1e6, **tiny))     # diverges
    pairs += sweep.anneal(sweep.grid([1], [32], **tiny), [20 * 128, 40 * 128], warmup=2)   # a trunk, a branch
    store = Store(tmp_path / "runs.sqlite")
    frame = sweep.run_sweep(pairs, store=store, executor="ray", progress=False)
    assert frame["status"].tolist() == ["complete", "complete", "diverged", "complete", "complete"]
    assert frame["attempts"].tolist() == [1] * 5
    branch = store.get(frame["run_key"][3])["result"]
    assert branch["steps"] == 20 and branch["resumed_from_step"] == 16    # one task: only its cooldown trained
    # the tasks wrote the results: curves and gradient norms are in the store
    assert set(store.curves_frame()["depth"]) == {1, 2} and not store.grad_norms_frame().empty
    # a task asks for one CPU and no GPU here, so torch runs one thread per task
    assert all("1 threads" in d for d in frame["device"])
    # the same sweep again: all cached
    again = sweep.run_sweep(pairs, store=store, executor="ray", progress=False)
    assert again["attempts"].tolist() == [1] * 5 and again["updated"].tolist() == frame["updated"].tolist()


def test_missing_ray_gives_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)     # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "ray\[default\]"'):
        sweep.run_sweep(sweep.grid([1], [32], steps=5), store=tmp_path / "s.sqlite", executor="ray",
                        progress=False)
