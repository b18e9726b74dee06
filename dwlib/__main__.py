"""Command line: `python -m dwlib train|sweep|runs …` (see `python -m dwlib --help`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import types
import typing
from pathlib import Path

from . import sweep
from .config import WSD_SCHEDULES, ModelConfig, TrainConfig, steps_for_budget
from .store import DEFAULT_PATH, Store, StoreError
from .sweep import EXECUTORS, TRAIN_FIELDS

DESCRIPTION = """\
dwlib: train transformers of chosen depth and width and measure which shape wins at a fixed budget.

  python -m dwlib train --depth 4 --width 128 --steps 200         one run, on the embedded stdlib corpus
  python -m dwlib train --corpus tinyshakespeare --flops 1e13     one run with a FLOP budget
  python -m dwlib train --corpus file:notes/ --tokenizer bpe:2048 your own text, a locally trained BPE

Every run records its corpus fingerprint, parameters, FLOPs, losses and per-layer gradient norms.
"""


# One flag per config field, made from the field's metadata (dwlib/config.py `option`): its default,
# choices and help are written there only.
FIELDS = {f.name: f for config in (ModelConfig, TrainConfig) for f in dataclasses.fields(config)}
TYPES = {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}
FLAGS = {name: f.metadata.get("flag", "--" + name.replace("_", "-")) for name, f in FIELDS.items()}   # None: no flag
EXPECTED = {int: "a whole number", float: "a number", bool: "true or false", tuple: "comma-separated whole numbers"}
BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The model and training flags. A flag left out is absent from the parsed namespace
    (argparse.SUPPRESS), so the dataclass default applies; values are read by `configs_from_args`,
    which names the flag in any error (one line, not argparse's usage text)."""
    group = p
    for name, f in FIELDS.items():
        if "group" in f.metadata:
            group = p.add_argument_group(f.metadata["group"])
        if FLAGS[name] is None:
            continue
        text = f.metadata["help"]
        if f.default is not None and f.default is not False and "default" not in text:
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            text += f" (default {shown})"
        text = text.replace("%", "%%")   # argparse formats help with %
        if TYPES[name] is bool:
            group.add_argument(FLAGS[name], dest=name, action="store_true", default=argparse.SUPPRESS, help=text)
        else:
            choices = f.metadata.get("choices")
            metavar = "{" + ",".join(choices) + "}" if choices else FLAGS[name][2:].upper().replace("-", "_")
            group.add_argument(FLAGS[name], dest=name, default=argparse.SUPPRESS, metavar=metavar, help=text)
    group.add_argument("--quiet", action="store_true", help="no progress bar")   # execution, not a config field


def read_value(name: str, text: str):
    """Command-line text as config field `name`'s type, from its annotation: int | None reads as int
    (2e6 too: budgets are written so), tuple[int, ...] as comma-separated ints, bool as true/false.
    A ValueError says what was expected."""
    kind = TYPES[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):   # X | None: the value is an X
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    kind = typing.get_origin(kind) or kind
    try:
        if kind is tuple:
            return tuple(whole_number(x) for x in text.split(",") if x.strip())
        if kind is bool:
            return BOOLS[text.strip().lower()]
        return whole_number(text) if kind is int else float(text) if kind is float else text
    except (ValueError, KeyError):
        raise ValueError(EXPECTED[kind]) from None


def whole_number(text: str) -> int:
    """An int from '2000' or '2e3'; a ValueError for '2.5', 'inf', 'nan'."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """Build (ModelConfig, TrainConfig) from the flags given; the vocab size follows the tokenizer and a k-hop
    corpus's task. Bad values are a ValueError naming the flag; so is a budget that plans more than
    config.MAX_STEPS steps."""
    from .data import vocab_size   # imports torch: only once flags are parsed
    given = {}
    for name, value in vars(args).items():
        if name in FIELDS:
            try:
                given[name] = value if value is True else read_value(name, value)
            except ValueError as e:
                raise ValueError(f"{FLAGS[name]} takes {e}, got {value!r}") from None
    try:
        train = TrainConfig(**{k: v for k, v in given.items() if k in TRAIN_FIELDS})
        model = ModelConfig(**{k: v for k, v in given.items() if k not in TRAIN_FIELDS},
                            vocab_size=vocab_size(train.corpus, train.tokenizer))
        steps_for_budget(model, train)   # a plan too long for any sane run: refused before anything loads
    except ValueError as e:
        # config errors start with the field's name: say the flag instead ("lr must …" → "--lr must …")
        name, space, rest = str(e).partition(" ")
        if space and FLAGS.get(name):
            raise ValueError(f"{FLAGS[name]} {rest}") from None
        raise
    return model, train


def cmd_train(args) -> int:
    from .train import train
    model_cfg, train_cfg = configs_from_args(args)
    if args.record:
        check_writable(args.record, "--record")
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
            write_record(args.record, record)
        except OSError as e:   # the summary above is printed: the run is not lost without a word
            print(f"error: could not write the record to --record {args.record}: {e}", file=sys.stderr)
            return 4
    return 0 if record["status"] == "complete" else 3


def write_record(path: str, record: dict) -> None:
    """--record: a regular file is replaced atomically (a full disk leaves the old file or none, never a
    truncated one); anything else (/dev/stdout, a pipe) is written to directly."""
    from .data import atomic_write
    text, target = json.dumps(record, indent=1), Path(path).resolve()
    if target.exists() and not target.is_file():
        with open(target, "w") as f:
            f.write(text)
    else:
        atomic_write(target, lambda f: f.write(text.encode()), "--record")


def number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def check_writable(path: str, flag: str, folder: bool = False) -> None:
    """Refuse, before training rather than after, a path that cannot be written: a file (--record) or a
    folder (--checkpoint-dir, made if missing)."""
    target = os.path.join(path, f".dwlib-write-test-{os.getpid()}") if folder else path
    existed = os.path.exists(target)
    try:
        if folder:
            os.makedirs(path, exist_ok=True)
        open(target, "a").close()
    except OSError as e:
        raise ValueError(f"{flag} {path} cannot be written: {e.strerror or e}") from None
    if not existed:
        os.unlink(target)


# -- sweep and runs (dwlib.sweep, dwlib.store) ------------------------------------------------

SWEEP_DESIGNS = tuple(sweep.DESIGNS)
SUMMARY_COLUMNS = ["run_id", "status", "depth", "width", "seed", "params", "steps", "tokens", "flops",
                   "tokens_per_param", "train_loss", "val_loss", "final_slope", "wall_seconds", "error"]


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweep design (the model and training flags above are the shared config)")
    g.add_argument("--design", choices=SWEEP_DESIGNS, default="grid",
                   help="grid: depths x widths (or --shapes) x seeds (default); depth: --depths at --width "
                        "(or at each of --widths); width: --widths at --depth; compute-matched: shapes trained "
                        "for --flops each; matched: --depths at the params of the shape (--reference-depth, "
                        "--width), narrower when deeper; critical-depth: the shape at D_crit(--width) vs one 2x "
                        "deeper and narrower (matched params; or the two --depths given), --flops each; "
                        "isoflop: shapes at each of --budgets")
    g.add_argument("--depths", default=None, help="comma-separated depths, e.g. 2,4,8,16 (default --depth)")
    g.add_argument("--widths", default=None, help="comma-separated widths, e.g. 128,256 (default --width)")
    g.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1 (default --seed)")
    g.add_argument("--shapes", help="explicit shapes DxW for compute-matched / isoflop, e.g. 2x256,8x128,32x64")
    g.add_argument("--budgets", default=None, help="isoflop: comma-separated FLOP budgets, e.g. 1e12,3e12,1e13")
    g.add_argument("--anneal-at", default=None, metavar="T1,T2,...",
                   help="token budgets, e.g. 2e4,4e4,8e4: every shape and seed of the design is trained once per "
                        "budget with a warmup-stable-decay schedule (--schedule wsd-sqrt unless wsd is given; "
                        "--cooldown; --warmup steps shared by all budgets, default 5%% of the smallest's): one "
                        "constant-LR trunk to the largest budget, a cooldown branch from it for each other "
                        "budget. Each budget is stored as its own annealed run (cooled to --min-lr, default lr/10)")
    g.add_argument("--aspect-ratios", default=None,
                   help="isoflop: comma-separated width/depth ratios used with --depths instead of --widths")
    g.add_argument("--annealed", action="store_true",
                   help="isoflop: train each shape and seed once over all --budgets, a warmup-stable-decay trunk "
                        "to the largest with a cooldown branch for each other budget (--schedule, --cooldown, "
                        "--warmup as with --anneal-at)")
    g.add_argument("--match", choices=["params", "flops"], default=None,
                   help="critical-depth: match the deeper shape's non-embedding params or FLOPs per token")
    g.add_argument("--reference-depth", type=int, default=None,
                   help="matched: the depth whose shape at --width sets the size (default the first of --depths)")
    g.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2",
                   help="also vary any config field, e.g. --vary lr=1e-3,3e-3 --vary mlp=gelu,swiglu (repeatable)")
    g = p.add_argument_group("store and executor")
    g.add_argument("--store", default=str(DEFAULT_PATH), help=f"results store (default {DEFAULT_PATH})")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: in this process (default); parallel: worker processes sharing the cores; "
                        "ray: one Ray task per run; slurm: one Slurm job per run (submitit)")
    g.add_argument("--workers", type=int, default=None, help="parallel: worker processes (default one per core)")
    g.add_argument("--ray-address", default=None, help="ray: cluster address (default: start a local instance)")
    g.add_argument("--checkpoint-dir", default=None,
                   help="where runs checkpoint while they train: a folder, or a URI every node of a Ray or "
                        "Slurm cluster reaches (s3://bucket/dwlib, gs://..., file://...); default beside the store")
    g.add_argument("--gpus-per-run", type=float, default=None,
                   help="ray: GPUs per run, fractions allowed (default 1 when the cluster has GPUs); slurm: whole "
                        "GPUs per job (default 1 with --device cuda, else 0)")
    g.add_argument("--cpus-per-run", type=int, default=1,
                   help="ray, slurm: CPUs (and torch threads) per run (default 1)")
    g.add_argument("--retries", type=int, default=sweep.RETRIES,
                   help="ray, slurm: resubmit a run whose worker, node or job died up to this many times, each "
                        f"resuming from its checkpoint (default {sweep.RETRIES})")
    g = p.add_argument_group("slurm (--executor slurm: one job per run through submitit)")
    g.add_argument("--partition", default=None, help="partition(s) to submit to, e.g. gpu or gpu,gpu-long")
    g.add_argument("--time-limit", default="60", help="time limit per job: minutes or [D-]HH:MM[:SS] (default 60); "
                                                      "a job near it is requeued and resumes from its checkpoint")
    g.add_argument("--mem-per-run", default=None, help="memory per job, e.g. 16G or 500M (default the partition's)")
    g.add_argument("--array-parallelism", type=int, default=None,
                   help="at most this many of the sweep's jobs queued or running at once (default no limit)")
    g.add_argument("--sbatch-args", default="",
                   help='more sbatch options, written with "=": --sbatch-args="--qos=high --account=lab"')
    g.add_argument("--slurm-logs", default=None,
                   help="folder of the jobs' logs and pickles, on storage the nodes share (default <store dir>/slurm)")
    g.add_argument("--slurm-backend", choices=sweep.SLURM_BACKENDS, default="slurm",
                   help="local: submitit's local backend, the same jobs as processes of this machine (a Slurm "
                        "sweep tried without a cluster)")
    g.add_argument("--dry-run", action="store_true", help="print the design (shapes, params, budgets) and stop")
    g.add_argument("--json", action="store_true", help="print the sweep's runs as JSON records instead of a table")


def parse_numbers(text: str, flag: str, kind=int) -> tuple:
    """Comma-separated ints (`kind` int) or floats (`kind` float); a ValueError naming `flag` otherwise."""
    try:
        return tuple(kind(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"{flag} takes comma-separated {what}, got {text!r}") from None


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in str(text).split(","):
        depth, x, width = item.strip().lower().partition("x")
        if not (x and depth.isdigit() and width.isdigit()):
            raise ValueError(f"--shapes takes DxW items such as 2x256,8x128; got {item.strip()!r}")
        shapes.append((int(depth), int(width)))
    return shapes


def parse_vary(items: list[str]) -> dict:
    """--vary FIELD=V1,V2 → {field: [values]}, each value read as the field's type (see `read_value`)."""
    vary = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in FIELDS:
            raise ValueError(f"--vary takes FIELD=V1,V2 with FIELD a config field; got {item!r} "
                             f"(fields: {', '.join(FIELDS)})")
        vary[name] = []
        for value in values.split(","):
            try:
                vary[name].append(read_value(name, value.strip()))
            except ValueError as e:
                raise ValueError(f"--vary {name}: cannot read {value.strip()!r} as {e}") from None
    return vary


def check_vary(args, vary: dict) -> None:
    """A --vary field that the design or another flag sets for every run would be overridden without a
    word (`--vary seed=1,2` trained seed 0 twice): refuse it, naming both flags."""
    owners = {"depth": "--depths", "width": "--widths", "seed": "--seeds"}
    if args.design in ("compute-matched", "critical-depth", "isoflop"):
        owners.update(dict.fromkeys(sweep.BUDGET_FIELDS, f"--design {args.design}'s FLOP budgets"))
    if args.anneal_at:
        owners.update(dict.fromkeys((*sweep.BUDGET_FIELDS, "schedule", "cooldown", "warmup"), "--anneal-at"))
    for name, values in vary.items():
        if name in owners:
            given, owner = ",".join(map(str, values)), owners[name]
            hint = f"; give {owner} {given} instead" if owner in ("--depths", "--widths", "--seeds") else ""
            raise ValueError(f"--vary {name}={given} conflicts with {owner}, which sets every run's {name}{hint}")


def sweep_pairs(args) -> list:
    """The (ModelConfig, TrainConfig) pairs the sweep flags describe: `sweep.design(--design, …)` of the flags
    given (with --anneal-at: one per budget)."""
    model, train = configs_from_args(args)

    def numbers(flag, kind=int):
        text = getattr(args, flag[2:].replace("-", "_"))
        return parse_numbers(text, flag, kind) if text else None

    spec = dict(depths=numbers("--depths"), widths=numbers("--widths"), seeds=numbers("--seeds"),
                shapes=parse_shapes(args.shapes) if args.shapes else None, budgets=numbers("--budgets", float),
                aspect_ratios=numbers("--aspect-ratios", float), match=args.match,
                reference_depth=args.reference_depth, vary=parse_vary(args.vary), annealed=args.annealed or None)
    design = args.design
    if design in ("compute-matched", "critical-depth") and train.flops is None:
        raise ValueError(f"--design {design} needs a FLOP budget: --flops C")
    if design == "isoflop" and not spec["budgets"]:
        if not train.flops:
            raise ValueError("--design isoflop needs FLOP budgets: --budgets 1e12,1e13 (or --flops C)")
        spec["budgets"] = (train.flops,)
    if args.anneal_at and design in sweep.FLOP_DESIGNS:
        raise ValueError(f"--anneal-at sets token budgets; --design {design} matches FLOP budgets (use "
                         "--design grid, depth or width)")
    if args.anneal_at or args.annealed:
        spec["schedule"] = train.schedule if "schedule" in vars(args) else "wsd-sqrt"   # not given: the anneal default
        if spec["schedule"] not in WSD_SCHEDULES:
            flag = "--anneal-at" if args.anneal_at else "--annealed"
            raise ValueError(f"{flag} trains warmup-stable-decay runs (--schedule wsd or wsd-sqrt), not {spec['schedule']}")
    if args.anneal_at:
        spec["anneal_at"] = parse_numbers(args.anneal_at, "--anneal-at", float)
        if not all(math.isfinite(b) and b > 0 for b in spec["anneal_at"]):
            raise ValueError(f"--anneal-at takes positive token budgets, got {args.anneal_at!r}")
    check_vary(args, spec["vary"])
    try:
        return sweep.design(design, model=model, train=train, **{k: v for k, v in spec.items() if v not in (None, {})})
    except ValueError as e:   # "seed must be …" from --seeds -3 says the flag: "--seeds must be …"
        name, _, rest = str(e).partition(" ")
        if name in ("depth", "width", "seed") and getattr(args, name + "s"):
            raise ValueError(f"--{name}s {rest}") from None
        raise


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
    if args.checkpoint_dir and ("://" not in args.checkpoint_dir or args.checkpoint_dir.startswith("file://")):
        check_writable(args.checkpoint_dir.removeprefix("file://"), "--checkpoint-dir", folder=True)
    if args.executor not in ("ray", "slurm"):   # a cluster's nodes may have other devices than this machine
        from .train import check_memory, resolve_device
        for model, train in pairs:
            check_memory(model, train, resolve_device(train.device))
    if cost["trunks"] < cost["runs"]:
        print(cost_line, file=sys.stderr if args.json else sys.stdout, flush=True)
    frame = sweep.run_sweep(pairs, store=args.store, executor=args.executor, workers=args.workers,
                            progress=not args.quiet, ray_address=args.ray_address,
                            gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                            checkpoint_dir=args.checkpoint_dir, retries=args.retries,
                            slurm=dict(partition=args.partition, time_limit=args.time_limit,
                                       mem_per_run=args.mem_per_run, array_parallelism=args.array_parallelism,
                                       sbatch_args=args.sbatch_args, logs=args.slurm_logs, backend=args.slurm_backend))
    print_frame(frame, SUMMARY_COLUMNS, as_json=args.json)
    counts = frame["status"].value_counts().to_dict()
    lost = frame.attrs.get("lost", [])
    if not args.json:
        print(f"{len(frame)} runs in {args.store}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for line in lost:
        print(f"not run: {line}", file=sys.stderr)
    return 3 if counts.get("failed") or lost else 0


def cmd_runs(args) -> int:
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
    add_config_flags(p)
    p.add_argument("--json", action="store_true", help="print the result record as one JSON line (last line)")
    p.add_argument("--record", default=None, help="also write the full record (curves, grad norms) to this JSON file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a design of runs into a results store and print a summary",
                       description="Train every run of a sweep design that the store does not hold yet "
                                   "(finished runs are served from the store; interrupted ones resume "
                                   "from their checkpoints) and print one line per run.")
    add_config_flags(p)
    add_sweep_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list the runs in a results store",
                       description="List the runs in a results store, one line per run.")
    p.add_argument("--store", default=str(DEFAULT_PATH), help=f"results store (default {DEFAULT_PATH})")
    p.add_argument("--status", choices=["running", "interrupted", "complete", "diverged", "unstable", "failed"],
                   default=None, help="only runs with this status")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="all columns as JSON records")
    out.add_argument("--csv", action="store_true", help="all columns as CSV")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError, StoreError) as e:   # a disk, a missing package, a download
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    import warnings
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"   # no source lines on a CLI
    sys.exit(main())
