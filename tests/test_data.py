"""dwlib.data: corpora, tokenizers, the token cache and its fingerprints, the split, batches, errors.

Fixtures only: tests/fixtures/corpus and a stand-in for tinyshakespeare (conftest.py); nothing is downloaded.
Nothing here may touch the network: urlopen is replaced by a function that fails the test.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import sysconfig
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dwlib import data
from dwlib.__main__ import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "corpus"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv("DWLIB_TINYSHAKESPEARE", raising=False)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DWLIB_CACHE", str(root))
    return root


def fixture_text() -> str:
    files = sorted(FIXTURES.rglob("*.txt"), key=lambda p: p.relative_to(FIXTURES).as_posix())
    return data.FILE_SEPARATOR.join(p.read_text(encoding="utf-8") for p in files)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


# --- cache dir and tokenizer specs --------------------------------------------------------------


def test_cache_dir_from_env_and_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DWLIB_CACHE", str(tmp_path / "a" / "b"))
    assert data.cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    monkeypatch.delenv("DWLIB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "dwlib"


def test_tokenizer_vocab_size():
    assert data.tokenizer_vocab_size("byte") == 256
    assert data.tokenizer_vocab_size("bpe:4096") == 4096
    assert data.tokenizer_vocab_size("bpe:70000") == 70000
    for bad in ["bpe:256", "bpe:", "bpe:x", "bpe:-5", "char", "", None, 256]:
        with pytest.raises(ValueError, match="tokenizer"):
            data.tokenizer_vocab_size(bad)


# --- byte tokenizer -----------------------------------------------------------------------------


def test_byte_round_trip():
    text = "def f(x):\n    return x  # naïve café, 深さ 🙂"
    ids = data.encode(text)
    assert ids == list(text.encode("utf-8")) and max(ids) < 256
    assert data.decode(ids) == text
    assert data.decode(torch.tensor(ids)) == text and data.decode(np.array(ids, dtype=np.uint8)) == text
    assert data.decode([0xE6, 0xB7]) == "\ufffd"           # a cut multi-byte character decodes visibly
    with pytest.raises(ValueError, match="256"):
        data.decode([65, 256])
    with pytest.raises(ValueError, match="-1"):
        data.decode([-1])
    with pytest.raises(ValueError, match="str"):
        data.encode(b"bytes")


# --- the default corpus: the standard library ---------------------------------------------------


def test_stdlib_file_list_is_sorted_and_excludes_tests():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = data.stdlib_files()
    rel = [p.relative_to(root).as_posix() for p in files]
    assert rel == sorted(rel) and len(rel) == len(set(rel)) and len(rel) > 300
    assert all(r.endswith(".py") for r in rel)
    for r in rel:
        parts = r.split("/")
        assert not set(parts[:-1]) & {"test", "tests", "idle_test", "site-packages", "__pycache__"}, r
        assert not parts[0].startswith("config-") and not parts[-1].startswith("_sysconfigdata"), r
    assert {"os.py", "json/decoder.py", "collections/__init__.py"} <= set(rel)
    assert data.stdlib_files() == files


def test_stdlib_default_loads_deterministically_and_second_load_tokenizes_nothing(fresh_cache, monkeypatch):
    tokens = data.load_tokens()                            # the real default: stdlib, byte
    assert (tokens.corpus, tokens.tokenizer, tokens.vocab_size) == ("stdlib", "byte", 256)
    assert tokens.train.dtype == np.uint8 and isinstance(tokens.train, np.memmap)
    assert not tokens.train.flags.writeable and not tokens.val.flags.writeable
    n = len(tokens.train) + len(tokens.val)
    assert n > 5_000_000 and abs(len(tokens.val) / n - 0.1) < 0.01
    assert len(tokens.fingerprint) == 64 and (fresh_cache / "tokens" / tokens.fingerprint / "tokens.npy").exists()
    # The cached path hashes the corpus again (its identity is its content) but never tokenizes it again.
    monkeypatch.setattr(data, "_encode_text", lambda *a: pytest.fail("second load tokenized the corpus"))
    again = data.load_tokens("stdlib", "byte")
    assert again.fingerprint == tokens.fingerprint
    assert np.array_equal(again.val[:1000], tokens.val[:1000])


def test_stdlib_max_tokens_caps_exactly(fresh_cache):
    capped = data.load_tokens("stdlib", max_tokens=50_000)
    assert len(capped.train) + len(capped.val) == 50_000
    assert len(capped.val) == 5_000
    text = data._read_corpus(data.stdlib_files(), "stdlib", None, keep_text=True)[1]
    assert bytes(capped.train) + bytes(capped.val) == text.encode("utf-8")[:50_000]
    assert capped.fingerprint != data.load_tokens("stdlib", max_tokens=60_000).fingerprint


# --- file: corpora ------------------------------------------------------------------------------


def test_file_corpus_single_file(fresh_cache):
    path = FIXTURES / "a_depth.txt"
    tokens = data.load_tokens(f"file:{path}", val_fraction=0.25)
    raw = path.read_bytes()
    assert bytes(tokens.train) + bytes(tokens.val) == raw
    assert len(tokens.train) == int(len(raw) * 0.75)         # ASCII file: characters = bytes
    assert tokens.corpus == f"file:{path}"


def test_file_corpus_folder_sorted_recursive_skipping_binary_and_hidden(fresh_cache, tmp_path):
    folder = tmp_path / "texts"
    write(folder / "b.txt", "second file\n")
    write(folder / "a" / "z.md", "first file, in a sub-folder\n")
    write(folder / "c.py", "print('third')\n")
    (folder / "d.bin").write_bytes(bytes([0, 1, 2, 255, 0]))       # binary: skipped
    (folder / "e.dat").write_bytes("caf\xe9".encode("latin-1"))     # not UTF-8: skipped
    write(folder / ".hidden", "never read\n")
    write(folder / "__pycache__" / "x.txt", "never read\n")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 entries: .*d\.bin \(not UTF-8 text\); .*e\.dat \(not UTF-8"):
        tokens = data.load_tokens(f"file:{folder}", val_fraction=0.2)
    expected = "first file, in a sub-folder\n\n\nsecond file\n\n\nprint('third')\n"
    assert data.decode(np.concatenate([tokens.train, tokens.val])) == expected
    # the fixture folder too: its content is what a folder corpus is defined to be
    fixture = data.load_tokens(f"file:{FIXTURES}")
    assert data.decode(np.concatenate([fixture.train, fixture.val])) == fixture_text()


def test_fingerprint_follows_content_not_names(fresh_cache, tmp_path):
    one = write(tmp_path / "one.txt", "the same words\n" * 20)
    two = write(tmp_path / "elsewhere" / "two.txt", "the same words\n" * 20)
    f1 = data.load_tokens(f"file:{one}").fingerprint
    assert data.load_tokens(f"file:{two}").fingerprint == f1          # same data, same fingerprint
    write(one, "other words now\n" * 20)
    os.utime(one, ns=(1, 1))                                           # a new mtime, like any edit
    assert data.load_tokens(f"file:{one}").fingerprint != f1
    assert data.load_tokens(f"file:{two}", val_fraction=0.2).fingerprint != f1   # the split is part of it
    assert data.load_tokens(f"file:{two}", "bpe:260").fingerprint != f1          # and the tokenizer


def test_a_file_edited_in_place_at_the_same_size_and_mtime_gets_a_new_fingerprint(fresh_cache, tmp_path):
    """Issue 25 item 2: `cp -p` (or `rsync -t`) of a same-size file with the same mtime over a corpus file
    left its size and mtime as they were, and the run trained on the stale cached tokens under the old
    identity. The fingerprint follows the content."""
    path = write(tmp_path / "corpus.txt", "the old words\n" * 50)
    old = data.load_tokens(f"file:{path}")
    source = write(tmp_path / "new.txt", "the new words\n" * 50)              # the same size
    os.utime(source, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    subprocess.run(["cp", "-p", str(source), str(path)], check=True)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (source.stat().st_size, source.stat().st_mtime_ns)
    new = data.load_tokens(f"file:{path}")
    assert new.fingerprint != old.fingerprint
    assert data.decode(np.concatenate([new.train, new.val])) == "the new words\n" * 50


def test_the_fingerprint_is_the_hash_of_the_text_split_and_tokenizer(fresh_cache):
    """Stored run keys hold fingerprints: their value is defined by the corpus text's sha256 (the files
    joined by a blank line), the split and the tokenizer, and must not change while the text does not."""
    content = hashlib.sha256(fixture_text().encode("utf-8")).hexdigest()
    recipe = {"format": 1, "content": content, "val_fraction": 0.1, "tokenizer": "byte", "tokenizer_sha256": None}
    expected = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    assert data.load_tokens(f"file:{FIXTURES}").fingerprint == expected


def test_pipes_sockets_and_odd_symlinks_in_a_corpus_folder_are_skipped_saying_so(fresh_cache, tmp_path):
    """Issue 25 item 5: a named pipe hung the load forever, a socket or a symlink loop was a traceback, a
    dangling symlink aborted naming its target. Each is skipped with a warning naming it."""
    folder = tmp_path / "c"
    write(folder / "a.txt", "real text\n" * 20)
    os.mkfifo(folder / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "kernel-ipc-1"))
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling").symlink_to(tmp_path / "gone.txt")
    (tmp_path / "elsewhere").mkdir()
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    out = {}

    def load():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out["tokens"] = data.load_tokens(f"file:{folder}")
        out["warnings"] = [str(w.message) for w in caught]

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(timeout=60)
    if loader.is_alive():   # blocked on the pipe: open its other end so the thread can finish
        os.close(os.open(folder / "pipe", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("loading the corpus blocked on a named pipe")
    sock.close()
    assert data.decode(np.concatenate([out["tokens"].train, out["tokens"].val])) == "real text\n" * 20
    message, = out["warnings"]
    for name, kind in [("dangling", "a dangling symlink"), ("kernel-ipc-1", "a socket"), ("linked", "a symlink to a "
                       "folder, not followed"), ("loop", "a symlink loop"), ("pipe", "a named pipe")]:
        assert f"{folder / name} ({kind})" in message
    with pytest.raises(ValueError, match="is a named pipe, not a file or a folder"):
        data.load_tokens(f"file:{folder / 'pipe'}")
    with pytest.raises(FileNotFoundError, match="does not exist .a dangling symlink"):
        data.load_tokens(f"file:{folder / 'dangling'}")


def test_a_bpe_vocabulary_the_corpus_cannot_support_is_refused_before_training(fresh_cache, tmp_path):
    """Issue 25 item 6: bpe:100000000 aborted the whole process (rc 134, a failed 2.4 GB allocation in the
    tokenizers trainer). n bytes of training text allow at most n - 1 merges: more is refused up front."""
    import resource
    path = write(tmp_path / "small.txt", "a few words of text\n" * 50)   # 1,000 bytes: 900 train
    code = f"from dwlib import data; data.load_tokens('file:{path}', 'bpe:100000000')"
    four_gb = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))   # a machine with 4 GB
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=four_gb)
    assert done.returncode == 1, done.stderr[-2000:]                  # it was 134: an abort in Rust
    assert "ValueError: tokenizer bpe:100000000 (--tokenizer) asks for more tokens" in done.stderr
    with pytest.raises(ValueError, match=r"its 900 bytes of training text allow at most 899 merges; use at most "
                                         r"bpe:1155"):
        data.load_tokens(f"file:{path}", "bpe:1156")
    with pytest.warns(RuntimeWarning, match="learned only"):   # the bound itself is allowed
        data.load_tokens(f"file:{path}", "bpe:1155")


def test_a_full_disk_under_the_cache_is_one_clear_error_leaving_no_partial_file(full_disk, tmp_path, monkeypatch,
                                                                              capsys):
    """Issue 25 item 9: a numpy traceback named neither the cache nor the disk, and (item 8's rule) no
    partial file may stay behind to keep the disk full."""
    monkeypatch.setenv("DWLIB_CACHE", str(full_disk / "cache"))
    corpus = write(tmp_path / "big.txt", "words to cache\n" * 5000)
    with pytest.raises(OSError, match=rf"no space left on device: {full_disk}/cache/tokens/\w+/tokens.npy "
                                      r"\(the dwlib cache: \$DWLIB_CACHE"):
        data.load_tokens(f"file:{corpus}")
    assert not list(full_disk.rglob("*.tmp"))
    assert main(["train", "--corpus", f"file:{corpus}", "--steps", "1", "--context", "32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on device:") and "DWLIB_CACHE" in err
    assert len(err.strip().splitlines()) == 1 and not list(full_disk.rglob("*.tmp"))


def test_a_cache_that_cannot_be_a_folder_is_an_error_naming_dwlib_cache(tmp_path, monkeypatch, capsys):
    """Issue 25 item 9: DWLIB_CACHE pointing at a file was a FileExistsError traceback not naming it."""
    path = write(tmp_path / "a-file", "x")
    monkeypatch.setenv("DWLIB_CACHE", str(path))
    with pytest.raises(OSError, match=rf"DWLIB_CACHE {path} cannot be used as the dwlib cache folder: it is a file"):
        data.load_tokens("stdlib")
    assert main(["train", "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: DWLIB_CACHE {path} cannot be used" in err and len(err.strip().splitlines()) == 1


def test_file_corpus_errors(fresh_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_tokens(f"file:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="needs a path"):
        data.load_tokens("file:")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        data.load_tokens(f"file:{tmp_path / 'empty'}")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.bin").write_bytes(b"\0\1\2")
    (tmp_path / "bin" / "y.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="no UTF-8 text"):
        data.load_tokens(f"file:{tmp_path / 'bin'}")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        data.load_tokens(f"file:{tmp_path / 'bin' / 'x.bin'}")
    write(tmp_path / "empty.txt", "")
    with pytest.raises(ValueError, match="no UTF-8 text"):
        data.load_tokens(f"file:{tmp_path / 'empty.txt'}")
    write(tmp_path / "one.txt", "x")
    with pytest.raises(ValueError, match="1 characters: too short"):
        data.load_tokens(f"file:{tmp_path / 'one.txt'}")


# --- tinyshakespeare ----------------------------------------------------------------------------


def test_tinyshakespeare_from_env_copy(fresh_cache, shakespeare_path, monkeypatch):
    monkeypatch.setenv("DWLIB_TINYSHAKESPEARE", str(shakespeare_path))
    tokens = data.load_tokens("tinyshakespeare")
    assert len(tokens.train) + len(tokens.val) == data.TINYSHAKESPEARE_BYTES
    assert data.decode(tokens.train[:40]).startswith("First Citizen:")
    # the content hash inside the fingerprint is the published checksum of the file
    meta = (fresh_cache / "tokens" / tokens.fingerprint / "meta.json").read_text()
    assert data.TINYSHAKESPEARE_SHA256 in meta and tokens.fingerprint != data.TINYSHAKESPEARE_SHA256
    # the same bytes as a file: corpus are the same data, so the same fingerprint
    assert data.load_tokens(f"file:{shakespeare_path}").fingerprint == tokens.fingerprint


def test_tinyshakespeare_from_cache_copy_without_download(fresh_cache, shakespeare_path):
    target = fresh_cache / "corpora" / "tinyshakespeare.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(shakespeare_path.read_bytes())
    assert data.tinyshakespeare_path() == target          # urlopen would fail the test if called
    assert len(data.load_tokens("tinyshakespeare").val) > 100_000


def test_tinyshakespeare_checksum_mismatch(fresh_cache, tmp_path, monkeypatch):
    corrupt = write(tmp_path / "input.txt", "First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.setenv("DWLIB_TINYSHAKESPEARE", str(corrupt))
    with pytest.raises(ValueError, match="fails its checksum") as err:
        data.load_tokens("tinyshakespeare")
    assert str(corrupt) in str(err.value) and data.TINYSHAKESPEARE_SHA256 in str(err.value)
    monkeypatch.delenv("DWLIB_TINYSHAKESPEARE")
    cached = write(fresh_cache / "corpora" / "tinyshakespeare.txt", "truncated")
    with pytest.raises(ValueError, match="fails its checksum"):
        data.tinyshakespeare_path()
    assert cached.exists()


def test_tinyshakespeare_missing_env_file(fresh_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("DWLIB_TINYSHAKESPEARE", str(tmp_path / "absent.txt"))
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        data.load_tokens("tinyshakespeare")


def test_tinyshakespeare_offline_error_says_where_to_put_the_file(fresh_cache, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError) as err:
        data.load_tokens("tinyshakespeare")
    message = str(err.value)
    assert str(fresh_cache / "corpora" / "tinyshakespeare.txt") in message
    assert "DWLIB_TINYSHAKESPEARE" in message and "no route to host" in message


def test_corpora_that_cannot_be_had_are_one_line_on_the_command_line(fresh_cache, monkeypatch, capsys):
    """Issue 25: tinyshakespeare offline and hf: without `datasets` printed 31-77 lines of chained tracebacks
    before their clear last line; the README promises one line and exit 2."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setitem(sys.modules, "datasets", None)          # import datasets → ImportError
    for corpus, needle in [("tinyshakespeare", "could not download tinyshakespeare"),
                           ("hf:someone/text", "pip install datasets")]:
        assert main(["train", "--corpus", corpus, "--steps", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1


def test_tinyshakespeare_download_is_verified_and_cached(fresh_cache, monkeypatch):
    # a stand-in server: the download path without the network
    class Response:
        def __init__(self, body):
            self.body = body
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def read(self):
            return self.body
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"not shakespeare"))
    with pytest.raises(ValueError, match="fails its checksum"):
        data.tinyshakespeare_path()
    assert not (fresh_cache / "corpora" / "tinyshakespeare.txt").exists()   # a bad download is not kept


# --- hf: corpora (no network: a stand-in `datasets` module) -------------------------------------


def test_hf_spec_errors_and_missing_dependency(fresh_cache, monkeypatch):
    for bad in ["hf:", "hf::cfg", "hf:name:", "hf:name:cfg:extra"]:
        with pytest.raises(ValueError, match="hf:NAME"):
            data.load_tokens(bad)
    monkeypatch.setitem(sys.modules, "datasets", None)          # import datasets → ImportError
    with pytest.raises(ImportError, match="pip install datasets"):
        data.load_tokens("hf:someone/some_text")


def test_hf_streams_text_column_up_to_cap(fresh_cache, monkeypatch):
    calls = []

    class FakeDatasets:
        @staticmethod
        def load_dataset(name, config, split, streaming):
            calls.append((name, config, split, streaming))
            return iter({"id": i, "story": f"story number {i}.", "n": i} for i in range(10_000))
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    tokens = data.load_tokens("hf:someone/stories:small", max_tokens=200)
    assert calls == [("someone/stories", "small", "train", True)]
    assert len(tokens.train) + len(tokens.val) == 200
    assert data.decode(tokens.train[:32]) == "story number 0.\n\nstory number 1."
    assert data.load_tokens("hf:someone/stories:small", max_tokens=200).fingerprint == tokens.fingerprint
    assert len(calls) == 1                                       # streamed once, then read from the cache

    class NoText:
        @staticmethod
        def load_dataset(name, config, split, streaming):
            return iter([{"x": 1, "y": [2]}])
    monkeypatch.setitem(sys.modules, "datasets", NoText)
    with pytest.raises(ValueError, match="no text column"):
        data.load_tokens("hf:other")


# --- BPE ----------------------------------------------------------------------------------------


def test_bpe_trains_caches_and_round_trips(fresh_cache, monkeypatch):
    tokens = data.load_tokens(f"file:{FIXTURES}", "bpe:300")
    assert tokens.vocab_size == 300 and tokens.train.dtype == np.uint16
    assert int(max(tokens.train.max(), tokens.val.max())) < 300
    assert Path(tokens.tokenizer_file).is_file() and Path(tokens.tokenizer_file).parent == fresh_cache / "tokenizers"
    n_byte = len(fixture_text().encode("utf-8"))
    assert len(tokens.train) + len(tokens.val) < 0.85 * n_byte          # merges do compress
    # decoding each split separately recovers the text exactly, including non-ASCII lines
    assert data.decode(tokens.train, tokens) + data.decode(tokens.val, tokens) == fixture_text()
    assert data.encode("café depth", tokens) != data.encode("café depth")
    assert data.decode(data.encode("café depth\n  width", tokens), tokens) == "café depth\n  width"
    # the second call reuses the trained tokenizer and the token arrays
    monkeypatch.setattr(data, "_train_bpe", lambda *a: pytest.fail("BPE retrained"))
    monkeypatch.setattr(data, "_encode_text", lambda *a: pytest.fail("corpus tokenized again"))
    again = data.load_tokens(f"file:{FIXTURES}", "bpe:300")
    assert again.fingerprint == tokens.fingerprint and again.tokenizer_file == tokens.tokenizer_file
    with pytest.raises(ValueError, match="pass the Tokens"):
        data.encode("x", "bpe:300")
    with pytest.raises(ValueError, match="300"):
        data.decode([300], tokens)


def test_bpe_training_is_deterministic(tmp_path):
    a = data.load_tokens(f"file:{FIXTURES}", "bpe:300", cache=tmp_path / "a")
    b = data.load_tokens(f"file:{FIXTURES}", "bpe:300", cache=tmp_path / "b")
    assert Path(a.tokenizer_file).read_bytes() == Path(b.tokenizer_file).read_bytes()
    assert a.fingerprint == b.fingerprint


def test_bpe_learns_from_training_split_only(fresh_cache, tmp_path):
    # the validation text is one word repeated; a tokenizer that saw it would merge it
    path = write(tmp_path / "t.txt", "ab cd ef gh " * 100 + "zqxj " * 60)   # 1200 + 300 characters
    tokens = data.load_tokens(f"file:{path}", "bpe:280", val_fraction=0.2)
    assert set(data.decode(tokens.val, tokens)) == set("zqxj ")
    vocab = data._load_bpe(tokens.tokenizer_file).get_vocab()
    assert not any(len(t) > 1 and set(t) <= set("zqxj") for t in vocab), "BPE saw validation text"
    assert "ab" in vocab


def test_bpe_chunked_encoding_equals_one_long_encode(tmp_path):
    # code has many whitespace runs, so a vocabulary learned on it merges them: a cut in the wrong
    # place (e.g. after any newline) would change the ids
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = "".join((stdlib / name).read_text(encoding="utf-8") for name in ["json/decoder.py", "textwrap.py"])
    data._train_bpe(code, 1000, tmp_path / "bpe.json")
    tok = data._load_bpe(str(tmp_path / "bpe.json"))
    for text in [code, fixture_text(), "a\n\n  b\n c\nd  \ne\n\n", "x\n    y\n\n    z  \n\tw\n"]:
        whole = tok.encode(text).ids
        for chunk_chars in [7, 50, 1000]:
            assert data._bpe_encode(tok, text, chunk_chars).tolist() == whole


# --- the split ----------------------------------------------------------------------------------


def test_split_is_contiguous_and_disjoint(fresh_cache, tmp_path):
    text = "".join(f"line {i:05d}\n" for i in range(2000))     # every line distinct: overlap would show
    path = write(tmp_path / "lines.txt", text)
    for fraction in [0.1, 0.3]:
        tokens = data.load_tokens(f"file:{path}", val_fraction=fraction)
        train, val = data.decode(tokens.train), data.decode(tokens.val)
        assert train + val == text
        assert len(val) == len(text) - int(len(text) * (1 - fraction))
        train_lines = set(train.split("\n")[:-1])
        val_lines = set(val.split("\n")[1:])
        assert not train_lines & val_lines
        assert not np.shares_memory(tokens.train, tokens.val)


def test_train_batches_never_read_validation_tokens(fresh_cache, tmp_path):
    path = write(tmp_path / "ab.txt", "a" * 900 + "b" * 100)
    tokens = data.load_tokens(f"file:{path}", val_fraction=0.1)
    assert set(np.unique(tokens.train)) == {ord("a")} and set(np.unique(tokens.val)) == {ord("b")}
    for step in range(300):
        x, y = data.get_batch(tokens.train, step, 8, 64, seed=3)
        assert (x == ord("a")).all() and (y == ord("a")).all()


def test_get_batch_windows_cover_data_and_stay_inside():
    values = np.arange(100, dtype=np.uint16)                   # each token is its own position
    seen = set()
    for step in range(400):
        x, y = data.get_batch(values, step, 4, 10, seed=0)
        assert int(y.max()) <= 99 and int(x.min()) >= 0
        seen.update(x[:, 0].tolist())
    assert seen == set(range(90))                               # every legal start, none beyond


# --- batches ------------------------------------------------------------------------------------


def test_get_batch_is_deterministic_and_shifted():
    values = np.random.default_rng(0).integers(0, 256, size=5000).astype(np.uint8)
    x, y = data.get_batch(values, 7, 5, 32, seed=11)
    assert x.shape == y.shape == (5, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        start = next(i for i in range(len(values) - 32) if np.array_equal(values[i:i + 32], row_x))
        assert np.array_equal(values[start + 1:start + 33], row_y)
    x2, y2 = data.get_batch(values, 7, 5, 32, seed=11)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, data.get_batch(values, 8, 5, 32, seed=11)[0])
    assert not torch.equal(x, data.get_batch(values, 7, 5, 32, seed=12)[0])
    # a pure function of (seed, step): the order of calls does not matter (exact resume)
    later = data.get_batch(values, 500, 5, 32, seed=11)[0]
    fresh = [data.get_batch(values, s, 5, 32, seed=11)[0] for s in range(501)]
    assert torch.equal(fresh[7], x) and torch.equal(fresh[500], later)


def test_val_batches_fixed_and_evenly_spaced(fresh_cache, tmp_path):
    path = write(tmp_path / "lines.txt", "".join(f"line {i:05d}\n" for i in range(3000)))
    tokens = data.load_tokens(f"file:{path}")
    first = data.val_batches(tokens, 3, 4, 16)
    second = data.val_batches(data.load_tokens(f"file:{path}"), 3, 4, 16)
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert x1.shape == (4, 16) and torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1[:, 1:], y1[:, :-1])
    val = torch.from_numpy(tokens.val.astype(np.int64))
    assert torch.equal(first[0][0][0], val[:16])                      # first window at the start
    assert torch.equal(first[-1][1][-1], val[-16:])                   # last window at the very end
    assert torch.equal(data.val_batches(tokens.val, 3, 4, 16)[1][0], first[1][0])


def test_batch_errors(fresh_cache, tmp_path):
    values = np.zeros(20, dtype=np.uint8)
    with pytest.raises(ValueError, match="20 tokens, fewer than context \\+ 1 = 21"):
        data.get_batch(values, 0, 2, 20, seed=0)
    data.get_batch(values, 0, 2, 19, seed=0)                           # exactly one window fits
    for kwargs, name in [(dict(batch_size=0), "batch_size"), (dict(context=-3), "context"),
                         (dict(step=-1), "step"), (dict(seed=-2), "seed"), (dict(step=1.5), "step")]:
        args = dict(data=values, step=0, batch_size=2, context=4, seed=0) | kwargs
        with pytest.raises(ValueError, match=name):
            data.get_batch(**args)
    with pytest.raises(ValueError, match="1-D"):
        data.get_batch(values.reshape(4, 5), 0, 2, 2, seed=0)
    path = write(tmp_path / "short.txt", "x" * 200)
    tokens = data.load_tokens(f"file:{path}")                          # 20 validation tokens
    with pytest.raises(ValueError, match="validation split has 20 tokens"):
        data.val_batches(tokens, 2, 2, 64)
    for args, name in [((0, 2, 4), "n_batches"), ((2, 0, 4), "batch_size"), ((2, 2, 0), "context")]:
        with pytest.raises(ValueError, match=name):
            data.val_batches(tokens, *args)


def test_load_errors(fresh_cache):
    with pytest.raises(ValueError, match="stdlib, tinyshakespeare, file:PATH"):
        data.load_tokens("wikipedia")
    with pytest.raises(ValueError, match="corpus must be a string"):
        data.load_tokens(None)
    with pytest.raises(ValueError, match="unknown tokenizer 'chars'"):
        data.load_tokens("stdlib", "chars")
    for fraction in [0, 1, -0.1, 1.5, "0.1", True]:
        with pytest.raises(ValueError, match="val_fraction"):
            data.load_tokens("stdlib", val_fraction=fraction)
    for cap in [0, -5, 2.5, True]:
        with pytest.raises(ValueError, match="max_tokens"):
            data.load_tokens("stdlib", max_tokens=cap)


# --- the cache on disk --------------------------------------------------------------------------


def test_max_tokens_cuts_at_character_boundary(fresh_cache, tmp_path):
    path = write(tmp_path / "e.txt", "é" * 50)                 # two bytes each
    tokens = data.load_tokens(f"file:{path}", max_tokens=41)
    assert len(tokens.train) + len(tokens.val) == 40           # the half character at the cut is dropped
    assert data.decode(np.concatenate([tokens.train, tokens.val])) == "é" * 20


def test_broken_cache_entry_is_rebuilt(fresh_cache):
    tokens = data.load_tokens(f"file:{FIXTURES}")
    folder = fresh_cache / "tokens" / tokens.fingerprint
    np.save(folder / "tokens.npy", np.zeros(3, dtype=np.uint8))        # e.g. a truncated copy
    again = data.load_tokens(f"file:{FIXTURES}")
    assert bytes(again.train) + bytes(again.val) == fixture_text().encode("utf-8")
    assert not list(fresh_cache.rglob("*.tmp"))


def test_corrupted_token_cache_is_rebuilt_with_a_warning(fresh_cache):
    tokens = data.load_tokens(f"file:{FIXTURES}")
    path = fresh_cache / "tokens" / tokens.fingerprint / "tokens.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:                 # scribble over the middle, in place: same size
        f.seek(size // 2)
        f.write(b"\x00" * 64)
    assert path.stat().st_size == size
    # the next process to load the corpus (a later run of a sweep) must not train on it
    code = (f"import sys; from dwlib import data; t = data.load_tokens('file:{FIXTURES}'); "
            "print(t.fingerprint); sys.stdout.flush(); sys.stdout.buffer.write(bytes(t.train) + bytes(t.val))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    fingerprint, _, text = out.stdout.partition(b"\n")
    assert fingerprint.decode() == tokens.fingerprint               # rebuilt under the same key
    assert text == fixture_text().encode("utf-8")
    assert f"token cache {path.parent} fails its checksum" in out.stderr.decode()
    assert not list(fresh_cache.rglob("*.tmp"))


def test_cache_without_a_checksum_is_rebuilt_under_the_same_fingerprint(fresh_cache):
    tokens = data.load_tokens(f"file:{FIXTURES}")
    meta_path = fresh_cache / "tokens" / tokens.fingerprint / "meta.json"
    meta = json.loads(meta_path.read_text())
    old = {k: v for k, v in meta.items() if k not in ("tokens_sha256", "trained_vocab_size")}
    meta_path.write_text(json.dumps(old))                        # as written before checksums
    again = data.load_tokens(f"file:{FIXTURES}")
    assert again.fingerprint == tokens.fingerprint
    assert json.loads(meta_path.read_text())["tokens_sha256"] == meta["tokens_sha256"]


def test_a_process_hashes_the_same_token_file_once(fresh_cache, monkeypatch):
    data.load_tokens(f"file:{FIXTURES}")
    monkeypatch.setattr(data, "_HASHED", {})                     # as in a fresh process (a sweep worker)
    hashed = []
    real = data._sha256_file
    monkeypatch.setattr(data, "_sha256_file", lambda path: hashed.append(path) or real(path))
    for _ in range(20):
        data.load_tokens(f"file:{FIXTURES}")
    assert len(hashed) == 1 and hashed[0].name == "tokens.npy"


def test_bpe_vocabulary_smaller_than_asked_is_reported(fresh_cache):
    with pytest.warns(RuntimeWarning, match=r"bpe:1900 learned only (\d+) tokens .* wastes .* use tokenizer bpe:"):
        tokens = data.load_tokens(f"file:{FIXTURES}", "bpe:1900")
    trained = tokens.trained_vocab_size
    assert tokens.vocab_size == 1900 and 256 < trained < 0.9 * 1900
    assert int(max(tokens.train.max(), tokens.val.max())) < trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # the suggested size fits: no warning
        exact = data.load_tokens(f"file:{FIXTURES}", f"bpe:{trained}")
    assert exact.trained_vocab_size == exact.vocab_size == trained
    assert np.array_equal(exact.train, tokens.train)


def test_two_processes_share_one_cache(tmp_path):
    # both build the same entry at once; atomic writes leave one complete copy and no temp files
    code = (f"from dwlib import data; t = data.load_tokens('file:{FIXTURES}', 'bpe:290'); "
            "print(t.fingerprint, len(t.train), len(t.val))")
    env = dict(os.environ, DWLIB_CACHE=str(tmp_path / "shared"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert outputs[0][0] == outputs[1][0]
    assert not list((tmp_path / "shared").rglob("*.tmp"))
    assert len(list((tmp_path / "shared" / "tokens").iterdir())) == 1
