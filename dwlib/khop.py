"""The k-hop induction task (Sanford, Hsu & Telgarsky 2024), generated here: no download.

A document is a random sequence x_1 … x_n over an alphabet of A symbols. Its k-hop answer at position i:
hop from i to the position just after the most recent earlier occurrence of x_i, k times; the answer is
the symbol reached, or "none" when a hop finds no earlier occurrence (1 hop: an induction head).

Token layout, ids from `offset` (the text tokenizer's vocabulary size; 0 for a pure `khop` corpus):
offset + s is symbol s, offset + A "none", offset + A + k the marker "k hops" (k = 1 … max hops), the next
id padding. A document is [marker k, x_1 … x_n]; the target at x_i is its k-hop answer (not the next
symbol); the marker's and padding's targets are -1 (not trained, not scored). A k-hop row of a batch holds
context // (n + 1) documents, padded at its end; validation documents cycle through the hop counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPEC_FORMS = "khop[:alphabet=4,length=63,hops=1,2,4,8,val=256] or TEXT+khop[:fraction=0.25,…]"
DEFAULTS = dict(alphabet=4, length=63, hops=(1, 2, 4, 8), val=256)
DEFAULT_FRACTION = 0.25      # of a mixed corpus's training sequences
TAG = 0x6B686F70             # "khop": seeds the task's random streams apart from the text batches'
TRAIN_STREAM, ROWS_STREAM, VAL_STREAM = 1, 2, 3


@dataclass(frozen=True)
class KHop:
    """A k-hop task: alphabet size, document length, hop counts, validation documents; `fraction` of a
    mixed corpus's training sequences (None: a pure k-hop corpus); `offset`, its first token id."""

    alphabet: int = DEFAULTS["alphabet"]
    length: int = DEFAULTS["length"]
    hops: tuple[int, ...] = DEFAULTS["hops"]
    val: int = DEFAULTS["val"]
    fraction: float | None = None
    offset: int = 0

    @property
    def none(self) -> int:
        return self.offset + self.alphabet

    @property
    def pad(self) -> int:
        return self.offset + self.alphabet + max(self.hops) + 1

    @property
    def n_tokens(self) -> int:
        """Token ids the task adds: the symbols, "none", one marker per hop count up to the largest, padding."""
        return self.alphabet + max(self.hops) + 2


def split_corpus(corpus: str) -> tuple[str | None, KHop | None]:
    """(text corpus, task) of a corpus spec: ('stdlib', None) for plain text, (None, KHop) for `khop:…`,
    ('stdlib', KHop with a fraction) for `stdlib+khop:…`. A bad option is a ValueError naming it."""
    if not isinstance(corpus, str):
        return corpus, None
    if corpus == "khop" or corpus.startswith("khop:"):
        text, options = None, corpus[5:]
    else:
        text, plus, rest = corpus.rpartition("+khop")
        if not plus or (rest and not rest.startswith(":")):
            return corpus, None
        if not text:
            raise ValueError(f"corpus {corpus!r}: a mixed corpus is TEXT+khop:…, e.g. stdlib+khop:fraction=0.25")
        options = rest[1:]
    values = dict(DEFAULTS, fraction=None if text is None else DEFAULT_FRACTION)
    name = None
    for item in options.split(",") if options else []:
        key, eq, value = item.partition("=")
        if not eq and name == "hops":   # hops=1,2,4: the items after hops= without a name are hop counts
            values["hops"] += "," + item
            continue
        name = key.strip()
        if not eq or name not in values:
            raise ValueError(f"corpus {corpus!r}: unknown k-hop option {item!r}; options are "
                             f"alphabet, length, hops, val{', fraction' if text else ''} ({SPEC_FORMS})")
        if name == "fraction" and text is None:
            raise ValueError(f"corpus {corpus!r}: fraction is for a mixed corpus (TEXT+khop:fraction=…)")
        values[name] = value.strip()
    task = KHop(alphabet=_number(corpus, "alphabet", values["alphabet"], 2),
                length=_number(corpus, "length", values["length"], 2),
                hops=_hops(corpus, values["hops"]), val=_number(corpus, "val", values["val"], 1),
                fraction=None if text is None else _fraction(corpus, values["fraction"]))
    return text, task


def _number(corpus, name, value, minimum) -> int:
    if isinstance(value, int) or (str(value).isdigit() and int(value) >= minimum):
        return int(value)
    raise ValueError(f"corpus {corpus!r}: k-hop {name} must be a whole number >= {minimum}, got {value!r}")


def _hops(corpus, value) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return value
    hops = []
    for part in str(value).split(","):
        low, dash, high = part.strip().partition("-")
        if not (low.isdigit() and int(low) >= 1 and (not dash or high.isdigit() and int(high) >= int(low))):
            raise ValueError(f"corpus {corpus!r}: k-hop hops must be hop counts >= 1 as 1-8 or 1,2,4; "
                             f"got {value!r}")
        hops += range(int(low), int(high if dash else low) + 1)
    return tuple(sorted(set(hops)))


def _fraction(corpus, value) -> float:
    try:
        fraction = float(value)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction < 1:
        raise ValueError(f"corpus {corpus!r}: k-hop fraction must lie strictly between 0 and 1, got {value!r}")
    return fraction


def answers(x: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """k-hop answers of documents x (N, n) of symbols, hops (N,) per document: the symbol reached, -1 for none.
    Each symbol's most recent earlier occurrence is a running maximum of its positions: A vectorised passes."""
    N, n = x.shape
    position = np.arange(n)
    previous = np.full((N, n), -1)
    for s in range(int(x.max()) + 1):
        last = np.maximum.accumulate(np.where(x == s, position, -1), axis=1)   # last occurrence at or before i
        previous = np.where(x == s, np.pad(last[:, :-1], ((0, 0), (1, 0)), constant_values=-1), previous)
    hop = np.where(previous >= 0, previous + 1, -1)
    at = np.broadcast_to(position, (N, n)).copy()
    for k in range(int(hops.max())):
        step = np.where(at >= 0, np.take_along_axis(hop, np.maximum(at, 0), axis=1), -1)
        at = np.where((k < hops)[:, None], step, at)
    return np.where(at >= 0, np.take_along_axis(x, np.maximum(at, 0), axis=1), -1)


def documents(task: KHop, rng: np.random.Generator, hops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of len(hops) documents, (N, n + 1) token ids each: marker and symbols; -1 and answers."""
    x = rng.integers(0, task.alphabet, size=(len(hops), task.length))
    y = answers(x, hops)
    inputs = np.concatenate([task.offset + task.alphabet + hops[:, None], task.offset + x], axis=1)
    targets = np.concatenate([np.full((len(hops), 1), -1), np.where(y >= 0, task.offset + y, task.none)], axis=1)
    return inputs, targets


def rows(task: KHop, inputs: np.ndarray, targets: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents packed context // (n + 1) to a row of `context` tokens, padded: (x, y) int64 tensors."""
    per_row = documents_per_row(task, context)
    n_rows = -(-len(inputs) // per_row)
    x = np.full((n_rows * per_row, task.length + 1), task.pad)
    y = np.full_like(x, -1)
    x[:len(inputs)], y[:len(inputs)] = inputs, targets
    pad = context - per_row * (task.length + 1)
    x = np.pad(x.reshape(n_rows, -1), ((0, 0), (0, pad)), constant_values=task.pad)
    y = np.pad(y.reshape(n_rows, -1), ((0, 0), (0, pad)), constant_values=-1)
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


def documents_per_row(task: KHop, context: int) -> int:
    if context < task.length + 1:
        raise ValueError(f"k-hop documents of length {task.length} need a context of at least {task.length + 1} "
                         f"tokens (marker and symbols), got {context}: lower length= or raise --context")
    return context // (task.length + 1)


def batch(task: KHop, step: int, batch_size: int, context: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch `step` of a run seeded `seed`, every row k-hop: a pure function of (seed, step)."""
    rng = np.random.default_rng([TAG, TRAIN_STREAM, int(seed), int(step)])
    hops = rng.choice(np.array(task.hops), size=batch_size * documents_per_row(task, context))
    return rows(task, *documents(task, rng, hops), context)


def task_rows(task: KHop, step: int, batch_size: int, seed: int) -> torch.Tensor:
    """Which rows of a mixed corpus's batch `step` are k-hop rows: each with probability `fraction`."""
    rng = np.random.default_rng([TAG, ROWS_STREAM, int(seed), int(step)])
    return torch.from_numpy(rng.random(batch_size) < task.fraction)


def validation(task: KHop, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed validation set, the same for every run and seed (its own random stream, apart from every
    training batch's): `val` documents cycling through the hop counts, as (x, y, hops) rows; hops holds each
    target's hop count, 0 where it is not scored."""
    hops = np.resize(np.array(task.hops), task.val)
    inputs, targets = documents(task, np.random.default_rng([TAG, VAL_STREAM]), hops)
    x, y = rows(task, inputs, targets, context)
    _, k = rows(task, inputs, np.where(targets >= 0, hops[:, None], -1), context)
    return x, y, k.clamp(min=0)
