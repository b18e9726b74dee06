"""What the results store and the sweep executors cost per run, next to training itself.

    python bench/sweep_overhead.py                 # store ops, cache hits, a tiny sweep local vs parallel
    python bench/sweep_overhead.py --ray           # also through a local Ray instance
    python bench/sweep_overhead.py --slurm         # also Slurm jobs through submitit's local backend
    python bench/sweep_overhead.py --runs 8 --steps 200 --ray --repeats 3   # interleaved, with the spread

Figures printed (milliseconds unless said):
  store: open (with its integrity quick_check), claim, heartbeat, finish (a full result record with
         a 500-point curve and gradient norms), get of a finished run, runs_frame of the whole store
  sweep.run on a finished run (the cache-hit path: corpus fingerprint + run key + store read)
  a sweep of N tiny runs: wall time sequential (1 and all threads) vs parallel workers, and the
  per-run overhead = (sweep wall − Σ trainer wall) / N; with --ray, Ray's overhead per run over the
  parallel executor at the same concurrency = (Ray's sweep wall − parallel's) / N, per repeat; with
  --slurm, the same for Slurm jobs (submitit's local backend: each job its own processes, as on a node)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dwlib import sweep                                                       # noqa: E402
from dwlib.config import ModelConfig, TrainConfig, available_cores, count_params, run_key, to_dict  # noqa: E402
from dwlib.store import Store                                                 # noqa: E402


def ms(samples):
    return f"{1e3 * statistics.median(samples):8.2f} ms (median of {len(samples)})"


def fake_result(m, t, key):
    steps = 2000
    curve = [dict(step=s, tokens=s * 4096, flops=s * 1e9, train_loss=3.0, val_loss=None, lr=1e-3)
             for s in range(4, steps + 1, 4)]
    norms = [dict(step=s, layer=layer, name=f"block{layer}", norm=0.5) for s in range(50, steps + 1, 50)
             for layer in range(-1, m.depth + 1)]
    return dict(status="complete", diverged_step=None, run_key=key, model=to_dict(m), train=to_dict(t),
                params=count_params(m), steps=steps, tokens=steps * 4096, flops=1e13, train_loss=3.0,
                val_loss=3.1, best_val_loss=3.1, curve=curve, grad_norms=norms, wall_seconds=60.0,
                tokens_per_second=1e5, device="cpu", corpus="stdlib", tokenizer="byte",
                corpus_fingerprint="bench", versions={})


def bench_store(root: Path, n_runs: int):
    store = Store(root / "store" / "runs.sqlite")
    timings = {k: [] for k in ("claim", "heartbeat", "finish", "get")}
    keys = []
    for i in range(n_runs):
        m = ModelConfig(depth=1 + i % 16, width=64 * (1 + i // 16))
        t = TrainConfig(steps=2000, seed=i)
        key = run_key(m, t, "bench")
        keys.append(key)
        config = {"model": to_dict(m), "train": to_dict(t), "corpus_fingerprint": "bench"}
        t0 = time.perf_counter(); store.claim(key, config, "bench"); timings["claim"].append(time.perf_counter() - t0)
        t0 = time.perf_counter(); store.heartbeat(key, "bench"); timings["heartbeat"].append(time.perf_counter() - t0)
        result = fake_result(m, t, key)
        t0 = time.perf_counter(); store.finish(key, result, "bench"); timings["finish"].append(time.perf_counter() - t0)
    for key in keys[:50]:
        t0 = time.perf_counter(); store.get(key); timings["get"].append(time.perf_counter() - t0)
    opens = []
    for _ in range(5):
        t0 = time.perf_counter(); Store(store.path); opens.append(time.perf_counter() - t0)
    import pandas  # noqa: F401  (its first import, ~0.4 s, is not the store's cost)
    t0 = time.perf_counter(); frame = store.runs_frame(); frame_s = time.perf_counter() - t0
    t0 = time.perf_counter(); curves = store.curves_frame(); curves_s = time.perf_counter() - t0
    size_mb = store.path.stat().st_size / 1e6
    print(f"store with {n_runs} finished runs ({size_mb:.1f} MB; each record: 500-point curve, "
          f"{len(fake_result(m, t, key)['grad_norms'])} grad norms)")
    print(f"  open Store(path)       {ms(opens)}")
    for name, samples in timings.items():
        print(f"  {name:<22} {ms(samples)}")
    print(f"  runs_frame()           {1e3 * frame_s:8.1f} ms for {len(frame)} runs")
    print(f"  curves_frame()         {1e3 * curves_s:8.1f} ms for {len(curves)} rows")


def tiny_pairs(n, steps, corpus, threads, device="auto"):
    return [sweep.make_pair(depth=1 + i % 2, width=64, context=64, head_dim=16, batch_size=8, steps=steps,
                            eval_every=max(1, steps // 2), eval_batches=2, seed=i // 2, corpus=corpus,
                            threads=threads, device=device) for i in range(n)]


def bench_sweeps(root: Path, n_runs: int, steps: int, corpus: str, use_ray: bool, device: str, repeats: int,
                 use_slurm: bool = False, only=None):
    cores = available_cores()
    print(f"\nsweep of {n_runs} tiny runs (D 1-2, W 64, T 64, B 8, {steps} steps, device {device}) on {cores} cores, "
          f"load average {os.getloadavg()[0]:.2f}; each executor {repeats}x, interleaved")
    # warm the token cache, the torch import and torch's first-call paths with one untimed run, so the
    # first configuration is not charged for them
    sweep.run(*tiny_pairs(1, 5, corpus, 1, device)[0], store=root / "warmup" / "runs.sqlite", progress=False)

    configs = [("local, 1 thread", "local", 1, None), (f"local, {cores} threads", "local", cores, None),
               (f"parallel, {cores} workers x 1 thread", "parallel", None, cores)]
    if use_ray:
        import ray
        configs.append((f"ray, {cores} CPUs, 1 per task", "ray", None, None))
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
        print(f"  (ray.init: {time.perf_counter() - t0:.1f} s, not counted below; Ray's first sweep starts its "
              "workers, later ones reuse them)")
    if use_slurm:   # a job is a fresh interpreter: it finds dwlib through the environment
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                 os.environ.get("PYTHONPATH")]))
        configs.append((f"slurm (local backend), {cores} jobs at once", "slurm", None, cores))
    configs = [c for c in configs if only is None or c[1] in only]
    rows = {label: [] for label, *_ in configs}
    for repeat in range(repeats):
        for label, executor, threads, workers in configs:
            store = Store(root / f"{label.replace(' ', '_').replace(',', '')}-{repeat}" / "runs.sqlite")
            pairs = tiny_pairs(n_runs, steps, corpus, threads, device)
            extra = {} if executor != "slurm" else dict(workers=None, slurm=dict(
                backend="local", logs=store.path.parent / "slurm", array_parallelism=workers))
            t0 = time.perf_counter()
            frame = sweep.run_sweep(pairs, store=store, **{"executor": executor, "workers": workers, **extra},
                                    progress=False)
            wall = time.perf_counter() - t0
            assert (frame["status"] == "complete").all(), frame[["status", "error"]]
            # the cache-hit path: the same sweep again trains nothing
            t0 = time.perf_counter()
            sweep.run_sweep(pairs, store=store, **{"executor": executor, "workers": workers, **extra}, progress=False)
            rows[label].append((wall, frame["wall_seconds"].sum(), time.perf_counter() - t0))
    if use_ray:
        ray.shutdown()
    # Overhead per run = (sweep wall − Σ trainer wall) / N is meaningful for sequential executors only:
    # concurrent runs overlap, so their trainer walls add up to more than the sweep's wall.
    print(f"  {'executor':<34} {'sweep wall, each repeat':>26} {'Σ train wall':>12} {'overhead/run':>13} {'cached rerun':>13}")
    for label, samples in rows.items():
        walls = " ".join(f"{w:6.2f}s" for w, _, _ in samples)
        wall, train_wall, cached = (statistics.median(x) for x in zip(*samples))
        overhead = f"{1e3 * (wall - train_wall) / n_runs:11.0f}ms" if label.startswith("local") else f"{'(overlap)':>13}"
        print(f"  {label:<34} {walls:>26} {train_wall:11.2f}s {overhead} {cached:12.2f}s")
    base = statistics.median(w for w, _, _ in rows[configs[0][0]])
    for label, *_ in configs[1:]:
        print(f"  speed-up of '{label}' over '{configs[0][0]}': {base / statistics.median(w for w, _, _ in rows[label]):.2f}x")
    # same concurrency (one run per core), so the difference of the walls is the cluster executor's cost
    parallel = next((rows[label] for label, executor, *_ in configs if executor == "parallel"), None)
    for label, executor, *_ in configs if parallel is not None else ():
        if executor in ("local", "parallel"):
            continue
        extra = [(wall - par_wall) / n_runs for (wall, _, _), (par_wall, _, _) in zip(rows[label], parallel)]
        print(f"  {executor}'s overhead per run over 'parallel' (same repeat): "
              + ", ".join(f"{1e3 * e:.0f} ms" for e in extra))
    # the in-process cache-hit path of one run
    store = Store(root / f"{configs[0][0].replace(' ', '_').replace(',', '')}-0" / "runs.sqlite")
    m, t = tiny_pairs(1, steps, corpus, 1, device)[0]
    hits = []
    for _ in range(20):
        t0 = time.perf_counter(); sweep.run(m, t, store=store, progress=False); hits.append(time.perf_counter() - t0)
    print(f"  sweep.run on a finished run (cache hit): {ms(hits)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store-runs", type=int, default=200, help="finished runs in the store benchmark")
    p.add_argument("--runs", type=int, default=8, help="tiny runs in the sweep benchmark")
    p.add_argument("--steps", type=int, default=100, help="steps per tiny run")
    p.add_argument("--corpus", default="stdlib")
    p.add_argument("--ray", action="store_true", help="also time a local Ray instance")
    p.add_argument("--slurm", action="store_true", help="also time Slurm jobs on submitit's local backend")
    p.add_argument("--only", default=None, help="only these executors, e.g. parallel,slurm (and no store benchmark)")
    p.add_argument("--device", default="cpu", help="device of the tiny runs (default cpu; auto picks CUDA)")
    p.add_argument("--repeats", type=int, default=1, help="sweeps per executor, interleaved (a busy machine varies)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        only = args.only.split(",") if args.only else None
        if only is None:
            bench_store(root, args.store_runs)
        bench_sweeps(root, args.runs, args.steps, args.corpus, args.ray, args.device, args.repeats, args.slurm, only)


if __name__ == "__main__":
    main()
