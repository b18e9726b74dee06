"""The k-hop task: answers against a brute-force implementation, determinism, the fixed validation set,
corpus specs, the trainer's scoring of answer positions only, and the store and CLI keeping the scores."""
import json

import numpy as np
import pytest
import torch

from dwlib import khop
from dwlib.__main__ import main
from dwlib.config import ModelConfig, TrainConfig
from dwlib.data import get_batch, load_tokens, train_batch, val_batches, vocab_size
from dwlib.store import Store
from dwlib.train import evaluate, task_evaluation, train

SMALL = "khop:alphabet=3,length=15,hops=1,2,4,val=12"


def brute_force(x: list, k: int):
    """The k-hop answer at every position, by walking back through the sequence: None where a hop fails."""
    out = []
    for i in range(len(x)):
        at = i
        for _ in range(k):
            j = next((j for j in range(at - 1, -1, -1) if x[j] == x[at]), None)
            if j is None:
                at = None
                break
            at = j + 1
        out.append(None if at is None else x[at])
    return out


@pytest.mark.parametrize("alphabet, length", [(2, 7), (3, 20), (5, 40), (8, 12)])
def test_answers_match_brute_force(alphabet, length):
    rng = np.random.default_rng(alphabet)
    x = rng.integers(0, alphabet, size=(200, length))
    hops = rng.integers(1, 9, size=200)
    got = khop.answers(x, hops)
    nones = 0
    for row, k, answer in zip(x.tolist(), hops, got.tolist()):
        expected = brute_force(row, int(k))
        assert answer == [-1 if a is None else a for a in expected]
        nones += expected.count(None)
    assert 0 < nones < x.size   # both cases occur


def test_documents_are_marker_then_symbols_with_answers_as_targets():
    task = khop.KHop(alphabet=4, length=6, hops=(1, 3), offset=100)
    inputs, targets = khop.documents(task, np.random.default_rng(0), np.array([1, 3]))
    for doc, target, k in zip(inputs, targets, (1, 3)):
        assert doc[0] == 100 + 4 + k and target[0] == -1   # marker "k hops", not scored
        symbols = (doc[1:] - 100).tolist()
        assert all(0 <= s < 4 for s in symbols)
        assert target[1:].tolist() == [104 if a is None else 100 + a for a in brute_force(symbols, k)]
    assert task.none == 104 and task.pad == 108 and task.n_tokens == 9


def test_batches_are_a_pure_function_of_seed_and_step():
    task = khop.split_corpus(SMALL)[1]
    a = khop.batch(task, 5, 4, 35, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, khop.batch(task, 5, 4, 35, seed=1)))
    assert not torch.equal(a[0], khop.batch(task, 6, 4, 35, seed=1)[0])
    assert not torch.equal(a[0], khop.batch(task, 5, 4, 35, seed=2)[0])
    x, y = a
    assert x.shape == y.shape == (4, 35) and x.dtype == torch.int64 and (y[:, 32:] == -1).all()
    assert (x[:, 32:] == task.pad).all() and (y[:, [0, 16]] == -1).all() and (y[:, 1:16] >= 0).all()


def test_validation_is_fixed_and_disjoint_from_training():
    task = khop.split_corpus(SMALL)[1]
    x, y, hops = khop.validation(task, 32)
    again = khop.validation(task, 32)
    assert all(torch.equal(u, v) for u, v in zip((x, y, hops), again))
    assert len(x) == 6 and int((y >= 0).sum()) == 12 * 15   # 12 documents, two to a row of 32
    assert [int((hops == k).sum()) for k in (1, 2, 4)] == [4 * 15] * 3
    assert ((hops > 0) == (y >= 0)).all()
    val_docs = {tuple(row[i:i + 16]) for row in x.tolist() for i in (0, 16)}
    for seed in (0, 1):
        for step in range(50):
            tx, _ = khop.batch(task, step, 4, 32, seed)
            assert not val_docs & {tuple(row[i:i + 16]) for row in tx.tolist() for i in (0, 16)}


def test_corpus_specs():
    assert khop.split_corpus("stdlib") == ("stdlib", None)
    assert khop.split_corpus("khop") == (None, khop.KHop())
    assert khop.split_corpus("khop:alphabet=8,length=48,hops=1-8")[1] == khop.KHop(8, 48, tuple(range(1, 9)))
    text, task = khop.split_corpus("stdlib+khop:fraction=0.25,hops=1,2,4,length=31")
    assert text == "stdlib" and task == khop.KHop(length=31, hops=(1, 2, 4), fraction=0.25)
    assert khop.split_corpus("file:a/b.txt+khop")[1].fraction == khop.DEFAULT_FRACTION
    assert vocab_size("khop", "byte") == 4 + 8 + 2 and vocab_size("stdlib+khop:hops=1-4", "bpe:512") == 512 + 10
    assert vocab_size("stdlib", "byte") == 256


@pytest.mark.parametrize("spec, bad", [
    ("khop:alphabet=1", "alphabet"), ("khop:length=x", "'x'"), ("khop:hops=0-3", "'0-3'"),
    ("khop:hops=4-2", "'4-2'"), ("khop:colour=red", "colour=red"), ("khop:fraction=0.5", "fraction"),
    ("stdlib+khop:fraction=1.5", "'1.5'"), ("+khop", r"TEXT\+khop")])
def test_bad_specs_name_the_bad_value(spec, bad):
    with pytest.raises(ValueError, match=bad):
        khop.split_corpus(spec)


def test_a_context_shorter_than_a_document_is_refused():
    with pytest.raises(ValueError, match="length 63 need a context of at least 64"):
        khop.batch(khop.KHop(), 0, 2, 32, 0)


def test_mixed_batches_keep_the_text_windows_and_the_fraction():
    tokens = load_tokens("stdlib+khop:fraction=0.25,length=15", "byte")
    assert tokens.task.offset == 256 and tokens.vocab_size == 256 + 14
    text_x, _ = get_batch(tokens.train, 3, 64, 32, 0)
    x, y = train_batch(tokens, 3, 64, 32, 0)
    task_rows = (x >= 256).any(1)
    assert torch.equal(x[~task_rows], text_x[~task_rows]) and (y[~task_rows] >= 0).all()
    assert (x[task_rows] >= 256).all()
    rows = sum(int(khop.task_rows(tokens.task, step, 64, 0).sum()) for step in range(100))
    assert abs(rows / 6400 - 0.25) < 0.02


class Oracle(torch.nn.Module):
    """Predicts `y` at the positions listed in `right` and a wrong id everywhere else."""

    def __init__(self, x, y, right):
        super().__init__()
        self.table = {tuple(r): (t, m) for r, t, m in zip(x.tolist(), y.tolist(), right.tolist())}

    def forward(self, x):
        logits = torch.zeros(*x.shape, 64)
        for i, row in enumerate(x.tolist()):
            target, right = self.table[tuple(row)]
            for j, (t, r) in enumerate(zip(target, right)):
                logits[i, j, t if r and t >= 0 else 63] = 1.0
        return logits


def test_accuracy_counts_only_answer_positions():
    task = khop.split_corpus(SMALL)[1]
    x, y, hops = khop.validation(task, 32)
    autocast = torch.autocast("cpu", enabled=False)
    perfect = task_evaluation(Oracle(x, y, y >= 0), (x, y, hops), 4, autocast)
    assert perfect["task_accuracy"] == 1.0 and perfect["task_scored"] == 12 * 15
    assert perfect["task_accuracy_by_hops"] == {k: dict(accuracy=1.0, scored=60) for k in ("1", "2", "4")}
    wrong = task_evaluation(Oracle(x, y, y < 0), (x, y, hops), 4, autocast)   # right only where nothing is scored
    assert wrong["task_accuracy"] == 0.0
    # only 2-hop answers right: 1/3 overall
    half = task_evaluation(Oracle(x, y, hops == 2), (x, y, hops), 4, autocast)
    assert half["task_accuracy"] == pytest.approx(1 / 3) and half["task_accuracy_by_hops"]["2"]["accuracy"] == 1.0


def test_training_loss_leaves_out_unscored_targets():
    from dwlib.model import Transformer
    torch.manual_seed(0)
    model = Transformer(ModelConfig(depth=1, width=16, head_dim=8, context=32, vocab_size=9))
    x, y = khop.batch(khop.split_corpus(SMALL)[1], 0, 2, 32, 0)
    logits, loss = model(x, y)
    scored = y >= 0
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[scored], y[scored]).item())


def tiny_run(corpus, on_step=None):
    tokens = load_tokens(corpus, "byte")
    model = ModelConfig(depth=2, width=16, head_dim=8, context=32, vocab_size=vocab_size(corpus, "byte"))
    cfg = TrainConfig(corpus=corpus, steps=6, batch_size=4, eval_every=3, eval_batches=2, device="cpu", threads=1)
    return tokens, model, cfg, train(model, cfg, progress=False, tokens=tokens, on_step=on_step)


def test_a_khop_run_records_its_accuracy():
    _, _, _, r = tiny_run(SMALL)
    assert r["status"] == "complete" and r["task_scored"] == 12 * 15
    assert 0 <= r["task_accuracy"] <= 1 and set(r["task_accuracy_by_hops"]) == {"1", "2", "4"}
    assert sum(h["scored"] for h in r["task_accuracy_by_hops"].values()) == r["task_scored"]
    assert r["task_accuracy"] == pytest.approx(np.mean([h["accuracy"] for h in r["task_accuracy_by_hops"].values()]))
    assert r["val_loss"] < np.log(9)   # the loss on the answer positions: it learned something
    json.dumps(r)


def test_a_mixed_run_keeps_the_text_only_val_loss():
    seen = {}
    tokens, model, cfg, r = tiny_run("stdlib+khop:fraction=0.5,alphabet=3,length=15,hops=1,2,4,val=12",
                                     on_step=lambda step, m: seen.update(model=m))
    assert r["task_scored"] == 12 * 15 and set(r["task_accuracy_by_hops"]) == {"1", "2", "4"}
    text_val = val_batches(tokens, cfg.eval_batches, cfg.batch_size, model.context)
    text_loss = evaluate(seen["model"], text_val, torch.autocast("cpu", enabled=False)).item()
    assert r["val_loss"] == pytest.approx(text_loss)
    plain = tiny_run("stdlib")[3]   # text corpora: the keys are there, None
    assert plain["task_accuracy"] is plain["task_scored"] is plain["task_accuracy_by_hops"] is None


def test_store_and_cli_show_the_scores(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    flags = ["--depths", "1", "--widths", "16", "--head-dim", "8", "--context", "32", "--steps", "3",
             "--batch-size", "2", "--eval-every", "3", "--eval-batches", "1", "--threads", "1", "--quiet"]
    assert main(["sweep", "--corpus", SMALL, "--store", str(store), "--json", *flags]) == 0
    swept = json.loads(capsys.readouterr().out)[0]
    assert swept["task_scored"] == 180 and set(swept["task_accuracy_by_hops"]) == {"1", "2", "4"}
    frame = Store(store).runs_frame()
    by_hops = frame["task_accuracy_by_hops"][0]   # a dict again
    assert by_hops.keys() == swept["task_accuracy_by_hops"].keys() and by_hops["1"]["scored"] == 60
    assert by_hops["1"]["accuracy"] == pytest.approx(swept["task_accuracy_by_hops"]["1"]["accuracy"])
    assert frame["task_accuracy"][0] == pytest.approx(swept["task_accuracy"])
    assert main(["runs", "--store", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)[0]
    assert listed["task_scored"] == 180 and listed["task_accuracy_by_hops"]["2"]["scored"] == 60
