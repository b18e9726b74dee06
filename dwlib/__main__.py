"""Command line: `python -m dwlib train|sweep|runs …` (see `python -m dwlib --help`)."""
from __future__ import annotations

import argparse
import json
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
    g.add_argument("--residual-scale", choices=["none", "rezero", "deepnorm"], default="none",
                   help="residual-branch scaling: learned ReZero gate or fixed 1/sqrt(2L) (default none)")
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
    g.add_argument("--schedule", choices=["cosine", "wsd", "constant"], default="cosine", help="LR schedule")
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
    """Build (ModelConfig, TrainConfig) from parsed flags; the vocab size follows the tokenizer."""
    from .data import tokenizer_vocab_size
    model = ModelConfig(
        depth=args.depth, width=args.width, n_heads=args.heads, head_dim=args.head_dim, context=args.context,
        vocab_size=tokenizer_vocab_size(args.tokenizer), mlp=args.mlp, norm=args.norm,
        residual_scale=args.residual_scale, share=args.share, tie_embeddings=args.tie_embeddings,
        parametrization=args.parametrization, base_width=args.base_width, base_depth=args.base_depth,
        depth_alpha=args.depth_alpha)
    train = TrainConfig(
        corpus=args.corpus, tokenizer=args.tokenizer, batch_size=args.batch_size, grad_accum=args.grad_accum,
        steps=args.steps, tokens=int(args.tokens) if args.tokens is not None else None, flops=args.flops,
        lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, schedule=args.schedule,
        weight_decay=args.weight_decay, beta1=args.beta1, beta2=args.beta2, grad_clip=args.grad_clip,
        eval_every=args.eval_every, eval_batches=args.eval_batches, seed=args.seed,
        grad_norm_steps=parse_ints(args.grad_norm_steps, "--grad-norm-steps"),
        device=args.device, threads=args.threads, compile=args.compile)
    return model, train


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated integers, got {text!r}") from None


def cmd_train(args) -> int:
    from .train import train
    model_cfg, train_cfg = configs_from_args(args)
    record = train(model_cfg, train_cfg, progress=not args.quiet)
    if args.record:
        with open(args.record, "w") as f:
            json.dump(record, f, indent=1)
    summary = {k: v for k, v in record.items() if k not in ("curve", "grad_norms")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{record['status']}: D={model_cfg.depth} W={model_cfg.width}  params {record['params']:,} "
              f"(non-embedding {record['non_embedding_params']:,})  tokens {record['tokens']:,}  "
              f"FLOPs {record['flops']:.3g}")
        val = record["val_loss"]
        print(f"train loss {record['train_loss']:.4f}  val loss {val if val is None else round(val, 4)}  "
              f"{record['tokens_per_second']:,.0f} tok/s  {record['wall_seconds']:.1f} s on {record['device']}")
    return 0 if record["status"] == "complete" else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dwlib", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sweep,runs}")
    p = sub.add_parser("train", help="train one model and print its result",
                       description="Train one model of the given shape and print its losses, "
                                   "parameter and FLOP counts and throughput.")
    add_model_flags(p)
    add_train_flags(p)
    p.add_argument("--json", action="store_true", help="print the result record as one JSON line (last line)")
    p.add_argument("--record", default=None, help="also write the full record (curves, grad norms) to this JSON file")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
