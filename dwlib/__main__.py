"""Command line: `python -m dwlib train|sweep|runs …` (see `python -m dwlib --help`)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .config import ModelConfig, TrainConfig

DESCRIPTION = """\
dwlib: train transformers of chosen depth and width and measure which shape wins at a fixed budget.

  python -m dwlib train --depth 4 --width 128 --steps 200         one run, on the embedded stdlib corpus
  python -m dwlib train --corpus tinyshakespeare --flops 1e13     one run with a FLOP budget
  python -m dwlib train --corpus file:notes/ --tokenizer bpe:2048 your own text, a locally trained BPE

Every run records its corpus fingerprint, parameters, FLOPs, losses and per-layer gradient norms.
"""


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model shape")
    g.add_argument("--depth", type=int, default=4, help="number of transformer blocks D (default 4)")
    g.add_argument("--width", type=int, default=128, help="model width W = d_model (default 128)")
    g.add_argument("--heads", type=int, default=None, help="attention heads (default: width / head-dim)")
    g.add_argument("--head-dim", type=int, default=64, help="head dimension when --heads is not given (default 64)")
    g.add_argument("--context", type=int, default=128, help="context length T in tokens (default 128)")
    g.add_argument("--mlp", choices=["gelu", "swiglu"], default="gelu", help="MLP type (default gelu, ratio 4)")
    g.add_argument("--norm", choices=["layernorm", "rmsnorm"], default="layernorm", help="normalisation (default layernorm)")
    g.add_argument("--residual-scale", default="none", metavar="{none,rezero,inv-sqrt-2l}",
                   help="residual-branch scaling: none (default), rezero (a learned gate per branch, starting "
                        "at 0) or inv-sqrt-2l (every Pre-LN branch x 1/sqrt(2L); called 'deepnorm' before, "
                        "but it is not DeepNet)")
    g.add_argument("--share", type=int, default=1,
                   help="MobileLLM immediate block-wise sharing: apply each block k times (default 1)")
    g.add_argument("--tie-embeddings", action="store_true", help="share input embedding and output head")
    g.add_argument("--parametrization", choices=["sp", "mup", "completep"], default="sp",
                   help="standard, muP or CompleteP (default sp)")
    g.add_argument("--base-width", type=int, default=128, help="muP/CompleteP base width (default 128)")
    g.add_argument("--base-depth", type=int, default=4, help="CompleteP base depth (default 4)")
    g.add_argument("--depth-alpha", type=float, default=1.0, help="CompleteP depth exponent: 1.0 or 0.5 (depth-muP)")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default="stdlib",
                   help="stdlib (default, offline: this Python's standard library source), tinyshakespeare, "
                        "file:PATH (a text file or folder), hf:NAME[:CONFIG] (needs `datasets`)")
    g.add_argument("--tokenizer", default="byte", help="byte (default, vocab 256) or bpe:N (trained locally)")
    g = p.add_argument_group("budget (give one; default 200 steps)")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps")
    g.add_argument("--tokens", type=float, default=None, help="training tokens (rounded to whole steps)")
    g.add_argument("--flops", type=float, default=None,
                   help="training FLOPs by Kaplan's 6N + 6LTW per token (rounded to whole steps)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per micro-batch (default 16)")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1)")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    g.add_argument("--min-lr", type=float, default=None, help="final learning rate (default lr/10)")
    g.add_argument("--warmup", type=int, default=None, help="warmup steps (default 5%% of steps)")
    g.add_argument("--schedule", choices=["cosine", "wsd", "wsd-sqrt", "constant"], default=None,
                   help="LR schedule after warmup: cosine to --min-lr (default; with --anneal-at: wsd-sqrt), "
                        "constant, or warmup-stable-decay: constant, then a cooldown to --min-lr over the last "
                        "--cooldown of the steps, linear (wsd) or 1-sqrt (wsd-sqrt, Hagele et al. 2024)")
    g.add_argument("--cooldown", type=float, default=0.2,
                   help="wsd schedules: fraction of the steps in the final decay (default 0.2)")
    g.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices (default 0.1)")
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.95)
    g.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip, 0 = off (default 1.0)")
    g.add_argument("--seed", type=int, default=0, help="seed for init and batch order (default 0)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-every", type=int, default=50, help="steps between validation evals (default 50)")
    g.add_argument("--eval-batches", type=int, default=8, help="fixed validation batches (default 8)")
    g.add_argument("--grad-norm-steps", default="1000",
                   help="comma-separated steps at which to record per-layer gradient norms, besides every "
                        "eval and the end (default 1000, as the Depth Delusion paper)")
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores this process may use)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on long GPU runs)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """Build (ModelConfig, TrainConfig) from parsed flags; the vocab size follows the tokenizer. Bad values
    are a ValueError naming the flag; so is a budget that plans more than config.MAX_STEPS steps."""
    from .config import steps_for_budget
    from .data import tokenizer_vocab_size
    for flag in ("tokens", "flops"):   # argparse reads "inf" and "nan" as floats: refuse them before int()
        if getattr(args, flag) is not None and not math.isfinite(getattr(args, flag)):
            raise ValueError(f"--{flag} must be a finite number, got {getattr(args, flag)}")
    try:
        model = ModelConfig(
            depth=args.depth, width=args.width, n_heads=args.heads, head_dim=args.head_dim, context=args.context,
            vocab_size=tokenizer_vocab_size(args.tokenizer), mlp=args.mlp, norm=args.norm,
            residual_scale=args.residual_scale, share=args.share, tie_embeddings=args.tie_embeddings,
            parametrization=args.parametrization, base_width=args.base_width, base_depth=args.base_depth,
            depth_alpha=args.depth_alpha)
        train = TrainConfig(
            corpus=args.corpus, tokenizer=args.tokenizer, batch_size=args.batch_size, grad_accum=args.grad_accum,
            steps=args.steps, tokens=int(args.tokens) if args.tokens is not None else None, flops=args.flops,
            lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, schedule=args.schedule or "cosine",
            cooldown=args.cooldown,
            weight_decay=args.weight_decay, beta1=args.beta1, beta2=args.beta2, grad_clip=args.grad_clip,
            eval_every=args.eval_every, eval_batches=args.eval_batches, seed=args.seed,
            grad_norm_steps=parse_ints(args.grad_norm_steps, "--grad-norm-steps"),
            device=args.device, threads=args.threads, compile=args.compile)
        steps_for_budget(model, train)   # a plan too long for any sane run: refused before anything loads
    except ValueError as e:
        # config errors start with the field's name: say the flag instead ("lr must …" → "--lr must …")
        name, space, rest = str(e).partition(" ")
        if space and name in vars(args):
            raise ValueError(f"--{name.replace('_', '-')} {rest}") from None
        raise
    return model, train


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated integers, got {text!r}") from None


def cmd_train(args) -> int:
    from .train import train
    model_cfg, train_cfg = configs_from_args(args)
    if args.record:
        check_writable(args.record)
    record = train(model_cfg, train_cfg, progress=not args.quiet)
    summary = {k: v for k, v in record.items() if k not in ("curve", "grad_norms")}
    if args.json:
        print(json.dumps(summary))
    else:
        status = record["status"] + (f" at step {record['diverged_step']}" if record["diverged_step"] else "")
        print(f"{status}: D={model_cfg.depth} W={model_cfg.width}  params {record['params']:,} "
              f"(non-embedding {record['non_embedding_params']:,})  tokens {record['tokens']:,} "
              f"({record['tokens_per_param']:.3g} per parameter)  FLOPs {record['flops']:.3g}")
        print(f"train loss {number(record['train_loss'], '.4f')}  val loss {number(record['val_loss'], '.4f')}  "
              f"{number(record['tokens_per_second'], ',.0f')} tok/s  {record['wall_seconds']:.1f} s on {record['device']}")
        if record["unstable_reason"]:
            print(f"unstable: {record['unstable_reason']}")
    if args.record:
        try:
            with open(args.record, "w") as f:
                json.dump(record, f, indent=1)
        except OSError as e:   # the summary above is printed: the run is not lost without a word
            print(f"error: could not write the record to --record {args.record}: {e}", file=sys.stderr)
            return 4
    return 0 if record["status"] == "complete" else 3


def number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def check_writable(path: str) -> None:
    """Refuse a --record path that cannot be written before training, not after."""
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as e:
        raise ValueError(f"--record {path} cannot be written: {e.strerror or e}") from None
    if not existed:
        os.unlink(path)


# -- sweep and runs (dwlib.sweep, dwlib.store) ------------------------------------------------

SWEEP_DESIGNS = ("grid", "depth", "width", "compute-matched", "critical-depth", "isoflop")
SUMMARY_COLUMNS = ["run_id", "status", "depth", "width", "seed", "params", "steps", "tokens", "flops",
                   "tokens_per_param", "train_loss", "val_loss", "final_slope", "wall_seconds", "error"]


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep design (the model and training flags above are the shared config)")
    g.add_argument("--design", choices=SWEEP_DESIGNS, default="grid",
                   help="grid: depths x widths x seeds (default); depth: --depths at --width; width: --widths "
                        "at --depth; compute-matched: shapes trained for --flops each; critical-depth: the "
                        "shape at D_crit(--width) vs one 2x deeper and narrower (matched params), --flops "
                        "each; isoflop: shapes at each of --budgets")
    g.add_argument("--depths", default=None, help="comma-separated depths, e.g. 2,4,8,16 (default --depth)")
    g.add_argument("--widths", default=None, help="comma-separated widths, e.g. 128,256 (default --width)")
    g.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1 (default --seed)")
    g.add_argument("--shapes", default=None,
                   help="explicit shapes DxW for compute-matched / isoflop, e.g. 2x256,8x128,32x64")
    g.add_argument("--budgets", default=None, help="isoflop: comma-separated FLOP budgets, e.g. 1e12,3e12,1e13")
    g.add_argument("--anneal-at", default=None, metavar="T1,T2,...",
                   help="token budgets, e.g. 2e4,4e4,8e4: every shape and seed of the design is trained once per "
                        "budget with a warmup-stable-decay schedule (--schedule wsd-sqrt unless wsd is given; "
                        "--cooldown; --warmup steps shared by all budgets, default 5%% of the smallest's): one "
                        "constant-LR trunk to the largest budget, a cooldown branch from it for each other "
                        "budget. Each budget is stored as its own fully annealed run")
    g.add_argument("--aspect-ratios", default=None,
                   help="isoflop: comma-separated width/depth ratios used with --depths instead of --widths")
    g.add_argument("--match", choices=["params", "flops"], default="params",
                   help="critical-depth: match the deeper shape's non-embedding params or FLOPs per token")
    g.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2",
                   help="also vary any config field, e.g. --vary lr=1e-3,3e-3 --vary mlp=gelu,swiglu (repeatable)")
    g = p.add_argument_group("store and executor")
    g.add_argument("--store", default="outputs/runs.sqlite", help="results store (default outputs/runs.sqlite)")
    g.add_argument("--executor", choices=["local", "parallel", "ray"], default="local",
                   help="local: in this process (default); parallel: worker processes sharing the cores; "
                        "ray: one Ray task per run")
    g.add_argument("--workers", type=int, default=None, help="parallel: worker processes (default one per core)")
    g.add_argument("--ray-address", default=None, help="ray: cluster address (default: start a local instance)")
    g.add_argument("--checkpoint-dir", default=None,
                   help="where runs checkpoint while they train: a folder, or a URI every node of a Ray "
                        "cluster reaches (s3://bucket/dwlib, gs://..., file://...); default beside the store")
    g.add_argument("--gpus-per-run", type=float, default=None,
                   help="ray: GPUs per run, fractions allowed (default 1 when the cluster has GPUs)")
    g.add_argument("--cpus-per-run", type=int, default=1, help="ray: CPUs (and torch threads) per run (default 1)")
    g.add_argument("--dry-run", action="store_true", help="print the design (shapes, params, budgets) and stop")
    g.add_argument("--json", action="store_true", help="print the sweep's runs as JSON records instead of a table")


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in str(text).split(","):
        depth, x, width = item.strip().lower().partition("x")
        if not (x and depth.isdigit() and width.isdigit()):
            raise ValueError(f"--shapes takes DxW items such as 2x256,8x128; got {item.strip()!r}")
        shapes.append((int(depth), int(width)))
    return shapes


def parse_vary(items: list[str]) -> dict:
    """--vary FIELD=V1,V2 → {field: [values]}, each value converted to the field's type."""
    import dataclasses
    fields = {f.name: f for c in (ModelConfig, TrainConfig) for f in dataclasses.fields(c)}
    vary = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in fields:
            raise ValueError(f"--vary takes FIELD=V1,V2 with FIELD a config field; got {item!r} "
                             f"(fields: {', '.join(fields)})")
        default = fields[name].default
        kind = type(default) if default is not None and not isinstance(default, tuple) else None
        out = []
        for v in values.split(","):
            v = v.strip()
            try:
                if kind is bool:
                    out.append(v.lower() in ("1", "true", "yes"))
                elif kind is int or (kind is None and name in ("steps", "tokens", "warmup", "n_heads", "threads")):
                    out.append(int(float(v)))
                elif kind is float or (kind is None and name in ("flops", "min_lr")):
                    out.append(float(v))
                else:
                    out.append(v)
            except ValueError:
                raise ValueError(f"--vary {name}: cannot read {v!r} as {kind.__name__ if kind else 'a number'}") from None
        vary[name] = out
    return vary


def sweep_pairs(args) -> list:
    """The (ModelConfig, TrainConfig) pairs the sweep flags describe (with --anneal-at: one per budget)."""
    from . import sweep
    pairs = design_pairs(args)
    if not args.anneal_at:
        return pairs
    if args.design in ("compute-matched", "critical-depth", "isoflop"):
        raise ValueError(f"--anneal-at sets token budgets; --design {args.design} matches FLOP budgets (use "
                         "--design grid, depth or width)")
    if args.schedule not in (None, "wsd", "wsd-sqrt"):
        raise ValueError(f"--anneal-at trains warmup-stable-decay runs (--schedule wsd or wsd-sqrt), not {args.schedule}")
    budgets = parse_floats(args.anneal_at, "--anneal-at")
    if not all(math.isfinite(b) and b > 0 for b in budgets):
        raise ValueError(f"--anneal-at takes positive token budgets, got {args.anneal_at!r}")
    return sweep.anneal(pairs, budgets, schedule=args.schedule or "wsd-sqrt", cooldown=args.cooldown,
                        warmup=args.warmup)


def design_pairs(args) -> list:
    from . import sweep
    model, train = configs_from_args(args)
    depths = parse_ints(args.depths, "--depths") if args.depths else (model.depth,)
    widths = parse_ints(args.widths, "--widths") if args.widths else (model.width,)
    seeds = parse_ints(args.seeds, "--seeds") if args.seeds else (train.seed,)
    common = dict(model=model, train=train, vary=parse_vary(args.vary))
    design = args.design
    if design in ("compute-matched", "critical-depth") and train.flops is None:
        raise ValueError(f"--design {design} needs a FLOP budget: --flops C")
    if design == "grid":
        return sweep.grid(depths, widths, seeds, **common)
    if design == "depth":
        return sweep.depth_sweep(model.width, depths, seeds, **common)
    if design == "width":
        return sweep.width_sweep(model.depth, widths, seeds, **common)
    if design == "compute-matched":
        shapes = parse_shapes(args.shapes) if args.shapes else [(d, w) for d in depths for w in widths]
        return sweep.compute_matched(train.flops, shapes, seeds, **common)
    if design == "critical-depth":
        return sweep.critical_depth_pair(train.flops, model.width, seeds, match=args.match, **common)
    budgets = parse_floats(args.budgets, "--budgets") if args.budgets else ((train.flops,) if train.flops else ())
    if not budgets:
        raise ValueError("--design isoflop needs FLOP budgets: --budgets 1e12,1e13 (or --flops C)")
    if args.shapes:
        return sweep.isoflop(budgets, shapes=parse_shapes(args.shapes), seeds=seeds, **common)
    if args.aspect_ratios:
        return sweep.isoflop(budgets, depths=depths, aspect_ratios=parse_floats(args.aspect_ratios, "--aspect-ratios"),
                             seeds=seeds, **common)
    return sweep.isoflop(budgets, depths=depths, widths=widths, seeds=seeds, **common)


def print_frame(frame, columns, as_json=False, as_csv=False) -> None:
    """A frame as JSON records, CSV (all columns) or a readable table of `columns`."""
    try:
        if as_json:
            print(frame.to_json(orient="records", date_format="iso"))
        elif as_csv:
            frame.to_csv(sys.stdout, index=False)
        elif frame.empty:
            print("(no runs)")
        else:
            import pandas as pd
            table = frame[[c for c in columns if c in frame.columns]].copy()
            for col in table.columns:
                if pd.api.types.is_datetime64_any_dtype(table[col]):
                    table[col] = table[col].dt.strftime("%Y-%m-%d %H:%M:%S")
                elif not pd.api.types.is_numeric_dtype(table[col]):
                    table[col] = table[col].astype(object).where(table[col].notna(), "-")
            with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 60):
                print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-"))
        sys.stdout.flush()
    except BrokenPipeError:   # `... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_sweep(args) -> int:
    from . import sweep
    pairs = sweep_pairs(args)
    cost = sweep.anneal_cost(pairs)
    cost_line = (f"cost: {cost['tokens_branched']:,} training tokens with cooldown branches ({cost['trunks']} "
                 f"trunks) vs {cost['tokens_separate']:,} for {cost['runs']} separate runs "
                 f"({cost['tokens_branched'] / cost['tokens_separate']:.0%})")
    if args.dry_run:
        print_frame(sweep.design_frame(pairs), ["depth", "width", "heads", "params", "non_embedding_params",
                                                "flops_per_token", "steps", "tokens", "flops", "lr", "seed"])
        if cost["trunks"] < cost["runs"]:
            print(cost_line)
        return 0
    if cost["trunks"] < cost["runs"]:
        print(cost_line, file=sys.stderr if args.json else sys.stdout, flush=True)
    frame = sweep.run_sweep(pairs, store=args.store, executor=args.executor, workers=args.workers,
                            progress=not args.quiet, ray_address=args.ray_address,
                            gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                            checkpoint_dir=args.checkpoint_dir)
    print_frame(frame, SUMMARY_COLUMNS, as_json=args.json)
    counts = frame["status"].value_counts().to_dict()
    lost = frame.attrs.get("lost", [])
    if not args.json:
        print(f"{len(frame)} runs in {args.store}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for line in lost:
        print(f"not run: {line}", file=sys.stderr)
    return 3 if counts.get("failed") or lost else 0


def cmd_runs(args) -> int:
    from pathlib import Path
    from .store import Store
    if not Path(args.store).exists():
        raise FileNotFoundError(f"no store at {args.store} (run `python -m dwlib sweep --store {args.store}` first)")
    frame = Store(args.store, readonly=True).runs_frame()   # listing never writes, not even to an empty file
    if args.status:
        frame = frame[frame["status"] == args.status]
    print_frame(frame, ["run_id", "status", "depth", "width", "seed", "lr", "schedule", "params", "tokens", "flops",
                        "tokens_per_param", "val_loss", "wall_seconds", "attempts", "updated", "error"],
                as_json=args.json, as_csv=args.csv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dwlib", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sweep,runs}")
    p = sub.add_parser("train", help="train one model and print its result",
                       description="Train one model of the given shape and print its losses, "
                                   "parameter and FLOP counts and throughput.",
                       epilog="exit status: 0 the run completed; 3 it diverged or is unstable (the record "
                              "says why); 2 bad input; 4 the run finished but --record could not be written "
                              "(the summary is printed); 130 interrupted")
    add_model_flags(p)
    add_train_flags(p)
    p.add_argument("--json", action="store_true", help="print the result record as one JSON line (last line)")
    p.add_argument("--record", default=None, help="also write the full record (curves, grad norms) to this JSON file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a design of runs into a results store and print a summary",
                       description="Train every run of a sweep design that the store does not hold yet "
                                   "(finished runs are served from the store; interrupted ones resume "
                                   "from their checkpoints) and print one line per run.")
    add_model_flags(p)
    add_train_flags(p)
    add_sweep_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list the runs in a results store",
                       description="List the runs in a results store, one line per run.")
    p.add_argument("--store", default="outputs/runs.sqlite", help="results store (default outputs/runs.sqlite)")
    p.add_argument("--status", choices=["running", "interrupted", "complete", "diverged", "unstable", "failed"],
                   default=None, help="only runs with this status")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="all columns as JSON records")
    out.add_argument("--csv", action="store_true", help="all columns as CSV")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv=None) -> int:
    from .store import StoreError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    import warnings
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"   # no source lines on a CLI
    sys.exit(main())
