"""Trainer throughput: tokens/s per shape and the fraction of the hardware's peak it reaches.

Runs the real trainer (dwlib.train.train) on the embedded stdlib corpus, so the figures include batch
fetching, the optimizer, clipping and the loss bookkeeping (evaluation excluded).

FLOPs are training FLOPs per token including the output head, `config.flops_per_token_with_head`:
6·N_applied + 6·L·T·W + 6·W·V (forward and backward; a shared block counts once per application).
  CPU: "% peak" divides the achieved FLOP/s by this machine's fp32 matmul peak, measured here: torch.mm
       of 1024×1024 by 1024×1024 at the shape's thread count, taken just before each of the shape's runs
       so that load from other processes falls on both. "GEMM" is the rate of the shape's own MLP matmul
       (B·T × W by W × 4W): a ceiling for a model whose matmuls are this small.
  GPU: MFU against the datasheet dense bf16 peak (bf16 autocast, with and without torch.compile).

Each variant of the code runs in its own worker process; with --baseline the code at a git ref runs
too, interleaved with this checkout (alternating which goes first), --repeats times: medians and
[min–max] are printed, and the ratio of medians. The load average before and after is printed: the
machine may be shared.

    python bench/throughput.py --device cpu        # CPU shapes (the default where there is no GPU)
    python bench/throughput.py --baseline main     # A/B against the code at `main`
    python bench/throughput.py --device cuda       # GPU shapes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name, model fields, batch, threads. First: nanoGPT's CPU recipe (README: 4 layers × 128, 4 heads,
# context 64, batch 12), on two threads; then the cpu preset's tiny shapes (head_dim 16, batch 16) on one.
CPU_SHAPES = [
    ("nanoGPT cpu", dict(depth=4, width=128, n_heads=4, context=64), 12, 2),
    ("nanoGPT cpu", dict(depth=4, width=128, n_heads=4, context=64), 12, 1),
    ("preset cpu", dict(depth=2, width=32, head_dim=16, context=64), 16, 1),
    ("preset cpu", dict(depth=8, width=64, head_dim=16, context=64), 16, 1),
    ("preset cpu", dict(depth=16, width=16, head_dim=16, context=64), 16, 1),
]
GPU_SHAPES = [(f"gpu{' compile' * c}", dict(depth=d, width=w, context=1024), b, None, c)
              for d, w, b in [(4, 256, 64), (12, 768, 32), (24, 1024, 16), (16, 2048, 16)] for c in (False, True)]


# ---------------------------------------------------------------------------------------------------
# Worker: one process per code variant, answering one JSON request per line


def gemm_rate(m: int, k: int, n: int, threads: int, seconds: float = 0.3) -> float:
    """fp32 FLOP/s of torch.mm (m×k by k×n) on `threads` threads: repeated for at least `seconds`."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        calls += 1
    return 2.0 * m * k * n * calls / (time.perf_counter() - start)


def train_rate(model: dict, batch: int, threads: int | None, steps: int, device: str, compile_: bool) -> dict:
    import torch  # noqa: F401  (imported before dwlib so its thread settings apply)
    from dwlib.config import ModelConfig, TrainConfig, flops_per_token_with_head
    from dwlib.data import load_tokens
    from dwlib.train import train
    cfg = ModelConfig(**model)
    tokens = load_tokens("stdlib", "byte")
    run = dict(batch_size=batch, eval_every=10 ** 9, eval_batches=1, device=device, threads=threads,
               compile=compile_, warmup=1, grad_norm_steps=())
    train(cfg, TrainConfig(steps=3, **run), progress=False, tokens=tokens)          # warm-up (and compile)
    record = train(cfg, TrainConfig(steps=steps, **run), progress=False, tokens=tokens)
    return dict(tokens_per_second=record["tokens_per_second"], flops_per_token=flops_per_token_with_head(cfg),
                params=record["params"], mfu=record["mfu"], device=record["device"])


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if request.pop("op") == "peak":
            answer = dict(flops_per_second=gemm_rate(**request))
        else:
            answer = train_rate(**request)
        print(json.dumps(answer), flush=True)


class Worker:
    """A worker process running the dwlib found at `root`."""

    def __init__(self, name: str, root: Path):
        self.name = name
        env = dict(os.environ, PYTHONPATH=str(root))
        self.process = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, cwd=root, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name!r} died on {request}")
        return json.loads(line)


def checkout(ref: str, into: Path) -> Path:
    """dwlib as it is at git `ref`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "dwlib"], capture_output=True, check=False)
    if archive.returncode:
        sys.exit(f"--baseline {ref!r}: git archive failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


# ---------------------------------------------------------------------------------------------------
# Driver


def measure(workers: list[Worker], shapes: list, steps: int, repeats: int, device: str) -> list[dict]:
    """Per shape: each variant's tokens/s over the repeats (and the CPU peak beside each repeat)."""
    rows = [dict(name=s[0], model=s[1], batch=s[2], threads=s[3], compile=s[4] if len(s) > 4 else False,
                 peak=[], gemm=[], runs={w.name: [] for w in workers}) for s in shapes]
    for rep in range(repeats):
        for row in rows:
            if device == "cpu":
                W, tokens = row["model"]["width"], row["batch"] * row["model"]["context"]
                row["peak"].append(workers[0].ask(op="peak", m=1024, k=1024, n=1024, threads=row["threads"])["flops_per_second"])
                row["gemm"].append(workers[0].ask(op="peak", m=tokens, k=W, n=4 * W, threads=row["threads"])["flops_per_second"])
            for w in (workers if rep % 2 == 0 else workers[::-1]):   # alternate who goes first
                row["runs"][w.name].append(w.ask(op="train", model=row["model"], batch=row["batch"], threads=row["threads"],
                                                 steps=steps, device=device, compile_=row["compile"]))
            print(f"  repeat {rep + 1}/{repeats}: {label(row)}", file=sys.stderr, flush=True)
    return rows


def label(row) -> str:
    m = row["model"]
    threads = f" {row['threads']}t" if row["threads"] else ""
    return f"{row['name']} {m['depth']}×{m['width']} T={m['context']} B={row['batch']}{threads}"


def spread(values, scale=1.0, fmt="{:,.0f}") -> str:
    values = [v * scale for v in values]
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def report(rows: list[dict], device: str) -> None:
    for row in rows:
        print(f"\n{label(row)}", end="")
        if row["peak"]:
            print(f"   peak {spread(row['peak'], 1e-9)} GFLOP/s   GEMM {spread(row['gemm'], 1e-9)} GFLOP/s", end="")
        print()
        medians = {}
        for name, runs in row["runs"].items():
            tps = [r["tokens_per_second"] for r in runs]
            flops = [r["tokens_per_second"] * r["flops_per_token"] for r in runs]
            medians[name] = statistics.median(tps)
            line = f"  {name:<22} {spread(tps):>28} tok/s  {spread(flops, 1e-9, '{:.1f}'):>22} GFLOP/s"
            if row["peak"]:   # each repeat against the rates measured beside it
                line += f"  {spread([f / p for f, p in zip(flops, row['peak'])], 100, '{:.1f}'):>18} % peak"
                line += f"  {spread([f / g for f, g in zip(flops, row['gemm'])], 100, '{:.1f}'):>18} % GEMM"
            elif runs[0]["mfu"] is not None:
                line += f"  MFU {spread([r['mfu'] for r in runs], 100, '{:.1f}')} %"
            print(line)
        if len(medians) == 2:
            (a, va), (b, vb) = medians.items()
            print(f"  {a} / {b}: {va / vb:.3f}× tokens/s")


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or platform.machine()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: cuda when present)")
    p.add_argument("--baseline", metavar="REF", help="also run dwlib as it is at this git ref, interleaved")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default 40 CPU, 100 GPU)")
    p.add_argument("--repeats", type=int, default=5, help="runs per shape and variant (default 5)")
    p.add_argument("--shapes", default=None, help="comma-separated indices into the shape list (default all)")
    p.add_argument("--json", action="store_true", help="also print the raw measurements as one JSON line")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return serve()
    import torch
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device not in ("cpu", "cuda"):
        sys.exit(f"--device must be cpu, cuda or auto, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device cuda: this torch build ({torch.__version__}) sees no CUDA GPU")
    if args.repeats < 1 or (args.steps is not None and args.steps < 1):
        sys.exit("--repeats and --steps must be positive")
    shapes = CPU_SHAPES if args.device == "cpu" else GPU_SHAPES
    if args.shapes:
        shapes = [shapes[int(i)] for i in args.shapes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workers = [Worker("this checkout", ROOT)]
        if args.baseline:
            workers.append(Worker(f"baseline {args.baseline}", checkout(args.baseline, Path(tmp))))
        load_before = os.getloadavg()
        rows = measure(workers, shapes, args.steps or (40 if args.device == "cpu" else 100), args.repeats, args.device)
        load_after = os.getloadavg()
        for w in workers:
            w.process.stdin.close()
            w.process.wait()
    first = next(iter(rows[0]["runs"].values()))[0]
    device = cpu_model() if args.device == "cpu" else first["device"]
    print(f"\ndevice: {device}   torch {torch.__version__}   cpus {os.cpu_count()}   "
          f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("FLOPs: training FLOPs per token including the head (config.flops_per_token_with_head); "
          "median [min–max] over repeats")
    report(rows, args.device)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
