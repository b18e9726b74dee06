"""`python -m dwlib sweep` and `python -m dwlib runs`: designs from flags, summary table, listings."""
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dwlib.__main__ import main
from dwlib.store import Store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text((stdlib / "textwrap.py").read_text() * 3)
    return f"file:{path}"


def tiny_flags(corpus):
    return ["--context", "32", "--head-dim", "16", "--batch-size", "4", "--eval-every", "10",
            "--eval-batches", "2", "--threads", "1", "--corpus", corpus, "--quiet"]


def test_sweep_prints_a_summary_and_reruns_from_the_store(tmp_path, corpus, capsys):
    store = tmp_path / "runs.sqlite"
    argv = ["sweep", "--depths", "1,2", "--widths", "32", "--seeds", "0,1", "--steps", "20",
            "--vary", "lr=1e-3,2e-3", "--store", str(store)] + tiny_flags(corpus)
    assert main(argv) == 0
    out = capsys.readouterr().out
    frame = Store(store).runs_frame()
    assert len(frame) == 8 and set(frame["status"]) == {"complete"}
    assert sorted(set(frame["lr"])) == [1e-3, 2e-3] and sorted(set(frame["seed"])) == [0, 1]
    for run_id in frame["run_id"]:
        assert run_id in out
    assert "8 runs in" in out and "8 complete" in out
    # the same command again trains nothing
    assert main(argv + ["--json"]) == 0
    records = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(records) == 8 and {r["attempts"] for r in records} == {1}


def test_runs_lists_the_store(tmp_path, corpus, capsys):
    store = tmp_path / "runs.sqlite"
    assert main(["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--store", str(store)]
                + tiny_flags(corpus)) == 0
    assert main(["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--lr", "1e6", "--store",
                 str(store)] + tiny_flags(corpus)) == 0          # diverges: a result, not an error
    capsys.readouterr()
    assert main(["runs", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    assert "complete" in table and "diverged" in table
    assert main(["runs", "--store", str(store), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in records] == ["complete", "diverged"]
    assert main(["runs", "--store", str(store), "--csv", "--status", "diverged"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("run_id,run_key,status") and len(lines) == 2 and ",diverged," in lines[1]


def test_failed_runs_give_exit_code_3(tmp_path, corpus, capsys):
    short = tmp_path / "short.txt"
    short.write_text("too short")     # fewer tokens than one context window: the trainer refuses it
    argv = ["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--store", str(tmp_path / "s.sqlite")]
    assert main(argv + tiny_flags(f"file:{short}")) == 3
    out = capsys.readouterr().out
    assert "1 failed" in out and "ValueError" in out
    # a corpus that cannot even be loaded: no run key, so not in the store, but still exit code 3
    with pytest.warns(RuntimeWarning, match="failed before reaching the store"):
        assert main(argv + tiny_flags(f"file:{tmp_path / 'missing.txt'}")) == 3
    assert "not run: D=1 W=32" in capsys.readouterr().err


def test_dry_run_shows_the_design(capsys):
    assert main(["sweep", "--design", "critical-depth", "--width", "256", "--head-dim", "16",
                 "--flops", "1e13", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["13", "256"] and lines[2].split()[0] == "26"
    with pytest.warns(UserWarning, match="dropped"):
        assert main(["sweep", "--design", "isoflop", "--budgets", "1e11,1e12", "--depths", "1,2,4",
                     "--aspect-ratios", "32,64", "--head-dim", "16", "--context", "64", "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 11
    assert main(["sweep", "--design", "compute-matched", "--shapes", "2x64,4x32", "--head-dim", "16",
                 "--flops", "1e11", "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_dry_run_of_the_notebooks_designs(capsys):
    """The command line reaches every design the notebooks use: an isoFLOP design trained as one trunk per
    shape (05) and depths matched to one shape's parameters (06)."""
    assert main(["sweep", "--design", "isoflop", "--annealed", "--budgets", "1e11,3e11", "--shapes", "1x32,2x32",
                 "--head-dim", "16", "--context", "64", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 + 4 + 1 and "(2 trunks)" in out[-1]   # header, 2 shapes × 2 budgets, cost
    assert main(["sweep", "--design", "matched", "--depths", "2,4,8", "--width", "64", "--reference-depth", "4",
                 "--head-dim", "16", "--tokens", "1e5", "--dry-run"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert [r[:2] for r in rows][1] == ["4", "64"] and int(rows[0][1]) > 64 > int(rows[2][1])
    assert main(["sweep", "--design", "isoflop", "--annealed", "--budgets", "1e11", "--shapes", "1x32",
                 "--schedule", "cosine", "--dry-run"]) == 2
    assert "--annealed trains warmup-stable-decay runs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--design", "compute-matched"], "needs a FLOP budget"),
    (["--design", "isoflop", "--depths", "2"], "needs FLOP budgets"),
    (["--vary", "bogus=1,2"], "--vary takes FIELD"),
    (["--vary", "lr=fast"], "cannot read 'fast'"),
    (["--design", "compute-matched", "--flops", "1e12", "--shapes", "2by64"], "DxW"),
    (["--depths", "2,four"], "--depths"),
    (["--widths", "100"], "not divisible"),
    (["--anneal-at", "1e4,2e4", "--schedule", "cosine"], "--anneal-at trains warmup-stable-decay runs"),
    (["--anneal-at", "1e4", "--design", "isoflop", "--budgets", "1e12"], "--design isoflop matches FLOP budgets"),
    (["--anneal-at", "1e3,1e6", "--warmup", "100"], "before the 100-step warmup ends"),
    (["--anneal-at", "1e4,inf"], "--anneal-at takes positive token budgets"),
])
def test_bad_sweep_flags_are_clear_errors(argv, message, capsys):
    assert main(["sweep", "--dry-run"] + argv) == 2
    assert message in capsys.readouterr().err


def test_runs_on_a_missing_or_foreign_store(tmp_path, capsys):
    assert main(["runs", "--store", str(tmp_path / "nope.sqlite")]) == 2
    assert "no store at" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello\n" * 1000)
    assert main(["runs", "--store", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt" in capsys.readouterr().err


def test_a_read_only_store_fails_the_sweep_naming_the_file(tmp_path, corpus, capsys, read_only):
    store = tmp_path / "runs.sqlite"
    argv = ["sweep", "--widths", "32", "--steps", "10", "--store", str(store)] + tiny_flags(corpus)
    assert main(argv + ["--depths", "1"]) == 0
    capsys.readouterr()
    read_only(store)
    assert main(argv + ["--depths", "1"]) == 0               # everything cached: reading is enough
    capsys.readouterr()
    assert main(argv + ["--depths", "1,2"]) == 2             # a new run cannot be recorded
    out, err = capsys.readouterr()
    assert "runs.sqlite" in err and "readonly" in err and "(no runs)" not in out


def test_a_store_in_a_read_only_folder_is_a_clear_error(tmp_path, corpus, read_only):
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(folder)
    argv = ["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--store", str(folder / "runs.sqlite")]
    out = subprocess.run([sys.executable, "-m", "dwlib"] + argv + tiny_flags(corpus), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"error: cannot open or write the results store '{folder / 'runs.sqlite'}'" in out.stderr


def test_runs_on_an_empty_file_says_so_and_leaves_it_empty(tmp_path, capsys):
    path = tmp_path / "empty.sqlite"
    path.touch()
    assert main(["runs", "--store", str(path)]) == 2
    assert "empty.sqlite' is empty: not a dwlib store" in capsys.readouterr().err
    assert path.stat().st_size == 0


def test_runs_does_not_import_torch(tmp_path):
    Store(tmp_path / "runs.sqlite")
    code = ("import sys; from dwlib.__main__ import main; main(['runs', '--store', sys.argv[1]]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs.sqlite")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_anneal_at_trains_a_trunk_and_a_branch_per_budget(tmp_path, corpus, capsys):
    """The contract: --anneal-at T1,T2,T3 on a depth design stores one fully annealed run per shape, seed
    and budget (tokens within one step of the budget, schedule naming the cooldown), and costs one trunk
    per shape and seed plus the other budgets' cooldowns."""
    store = tmp_path / "runs.sqlite"
    argv = ["sweep", "--design", "depth", "--depths", "1,2", "--width", "32", "--anneal-at", "2e4,4e4,8e4",
            "--store", str(store)] + tiny_flags(corpus)
    assert main(argv + ["--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "with cooldown branches (2 trunks) vs" in dry and "for 6 separate runs" in dry
    assert main(argv) == 0
    assert "with cooldown branches" in capsys.readouterr().out   # said at the start of the sweep too
    assert main(["runs", "--store", str(store), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 6
    per_step = 4 * 32
    for depth in (1, 2):
        for budget in (2e4, 4e4, 8e4):
            (r,), = [[r for r in records if r["depth"] == depth and abs(r["tokens"] - budget) <= per_step]]
            assert r["schedule"] == "wsd-sqrt" and r["status"] in ("complete", "unstable")
            result = Store(store).get(r["run_key"])["result"]
            assert result["curve"][-1]["lr"] == pytest.approx(r["lr"] / 10)            # fully annealed
            # the largest budget is the trunk; the others resumed from its fork at their decay start
            start = result["steps"] - int(0.2 * result["steps"] + 0.5)
            assert result["resumed_from_step"] == (0 if budget == 8e4 else start)


def test_anneal_at_is_documented():
    help_text = subprocess.run([sys.executable, "-m", "dwlib", "sweep", "--help"], capture_output=True, text=True,
                               cwd=REPO, timeout=60).stdout
    assert "--anneal-at" in help_text and "wsd-sqrt" in help_text
    assert "--anneal-at" in (REPO / "README.md").read_text()


def test_executor_ray_without_ray_is_one_line(tmp_path, corpus, capsys, monkeypatch):
    """Issue 25: `--executor ray` without Ray printed a 21-line traceback."""
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray → ImportError
    argv = ["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--executor", "ray",
            "--store", str(tmp_path / "runs.sqlite")]
    assert main(argv + tiny_flags(corpus)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: executor=\"ray\" needs Ray") and len(err.strip().splitlines()) == 1


def test_an_unwritable_checkpoint_dir_is_refused_before_training(tmp_path, corpus, capsys, read_only):
    """Issue 25: `--checkpoint-dir` on a read-only filesystem was found only at each run's first checkpoint,
    after it had trained that far."""
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    store = tmp_path / "runs.sqlite"
    argv = ["sweep", "--depths", "1", "--widths", "32", "--steps", "10", "--store", str(store),
            "--checkpoint-dir", str(locked / "checkpoints")]
    assert main(argv + tiny_flags(corpus)) == 2
    err = capsys.readouterr().err
    assert f"error: --checkpoint-dir {locked / 'checkpoints'} cannot be written" in err
    assert not store.exists()                                   # nothing was trained or stored


def test_a_rerun_with_another_checkpoint_dir_resumes_from_the_old_checkpoint(tmp_path, corpus, capsys):
    """Issue 25: a rerun with a different --checkpoint-dir restarted from step 0 without a word, and the old
    checkpoint stayed forever. It is moved to the new place, saying so, and the run resumes from it."""
    import dataclasses

    from dwlib import sweep
    from dwlib.__main__ import build_parser, sweep_pairs
    store, first, second = tmp_path / "runs.sqlite", tmp_path / "first", tmp_path / "second"
    argv = ["sweep", "--depths", "1", "--widths", "32", "--steps", "20", "--store", str(store)] + tiny_flags(corpus)
    (m, t), = sweep_pairs(build_parser().parse_args(argv))

    def interrupt(point):   # the first attempt stops at step 10, its checkpoint saved
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sweep.run(m, dataclasses.replace(t, checkpoint_every=5), store=store, checkpoint_dir=first,
                  progress=False, on_eval=interrupt)
    left, = first.glob("*.pt")
    with pytest.warns(RuntimeWarning, match=f"checkpointed to {left}: moved it to {second / left.name} and resuming"):
        assert main(argv + ["--checkpoint-dir", str(second)]) == 0
    record = Store(store).get(left.stem)["result"]
    assert record["resumed_from_step"] == 10 and record["steps"] == 20
    assert not left.exists() and not list(second.glob("*.pt"))   # moved, then removed once the result was stored
