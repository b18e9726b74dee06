"""Corpora by name, tokenizers, cached token arrays with fingerprints, fixed validation batches.

A corpus is one string:
    stdlib              the running Python's standard library sources (the default; needs no network)
    tinyshakespeare     Karpathy's char-rnn Shakespeare, downloaded once into the cache (sha256-checked)
    file:PATH           a UTF-8 text file, or a folder of them (recursive, sorted)
    hf:NAME[:CONFIG]    a Hugging Face `datasets` dataset, streamed and capped (optional dependency)
    khop[:OPTIONS]      the generated k-hop reasoning task alone; TEXT+khop[:OPTIONS] mixes it into a text
                        corpus as a fraction of the training sequences (see dwlib/khop.py)
A tokenizer is `byte` (UTF-8 bytes, vocab 256) or `bpe:N` (byte-level BPE with vocab N, trained
locally on the corpus's training split and cached).

`load_tokens` turns (corpus, tokenizer) into a train and a validation array, memory-mapped from
cache_dir()/tokens/<fingerprint>/. The fingerprint is a sha256 of the corpus text, the split and the
tokenizer (including a trained BPE vocabulary): every result records it, so numbers measured on
different data never mix. The text is hashed on every load, never looked up by file sizes and times,
which an in-place edit (`cp -p`, `rsync -t`) can leave unchanged. The split is made on the text, before
tokenizing: the first
(1 - val_fraction) of the characters are training text and the rest validation text, so byte and
BPE models of one corpus are scored on exactly the same text, and a BPE vocabulary never sees it.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sysconfig
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from functools import cache as cache_result, lru_cache
from pathlib import Path

import numpy as np
import torch

from . import khop

DEFAULT_CORPUS = "stdlib"
CORPUS_FORMS = ("stdlib, tinyshakespeare, file:PATH (a text file or folder), hf:NAME[:CONFIG], "
                f"{khop.SPEC_FORMS}")
TOKENIZER_FORMS = "byte, bpe:N (N > 256)"
FORMAT_VERSION = 1                 # bump when the text → tokens recipe changes; old caches are then ignored
FILE_SEPARATOR = "\n\n"            # between the files of a folder corpus
DEFAULT_HF_MAX_TOKENS = 10_000_000

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394

# Directories left out of the stdlib corpus: test suites and their data (much of it machine-made or
# deliberately odd), installed third-party packages, bytecode, and the build-configuration folder.
STDLIB_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache root: `cache` if given, else $DWLIB_CACHE, else ~/.cache/dwlib. Created on demand; one
    that cannot be a folder (a file, a read-only place) is an OSError naming it and where it came from."""
    env = os.environ.get("DWLIB_CACHE")
    root = Path(cache if cache is not None else env or Path.home() / ".cache" / "dwlib").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        source = "the cache asked for" if cache is not None else "DWLIB_CACHE" if env else "the default cache"
        why = "it is a file" if root.is_file() else e.strerror
        raise os_error(e.errno, f"{source} {root} cannot be used as the dwlib cache folder: {why} (set "
                                "DWLIB_CACHE to a writable folder)") from None
    return root


def tokenizer_vocab_size(tokenizer: str) -> int:
    """Vocabulary size a tokenizer spec stands for: 'byte' → 256, 'bpe:4096' → 4096."""
    if tokenizer == "byte":
        return 256
    if isinstance(tokenizer, str) and tokenizer.startswith("bpe:"):
        n = tokenizer[4:]
        if n.isdigit() and 256 < int(n) <= 2**31 - 1:
            return int(n)
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of: {TOKENIZER_FORMS}")


def vocab_size(corpus: str, tokenizer: str) -> int:
    """A model's vocabulary for `corpus` under `tokenizer`: the tokenizer's, plus the task tokens of a k-hop
    corpus (a pure `khop` corpus has no text: its task tokens alone). Reads no corpus."""
    text, task = khop.split_corpus(corpus)
    text_vocab = tokenizer_vocab_size(tokenizer)
    return (text_vocab if text is not None else 0) + (task.n_tokens if task is not None else 0)


@dataclass
class Tokens:
    """A tokenized corpus: contiguous train and validation arrays, read-only memory maps."""

    train: np.ndarray
    val: np.ndarray
    fingerprint: str             # sha256 of corpus text + split + tokenizer (with a trained BPE vocab)
    vocab_size: int
    corpus: str
    tokenizer: str
    tokenizer_file: str | None = None   # the trained BPE tokenizer (JSON); None for byte
    val_bytes: int | None = None        # UTF-8 bytes of validation text: loss·n_val/val_bytes is nats per byte
    trained_vocab_size: int | None = None   # ids in use: a bpe:N trained on little text learns fewer than N
    task: khop.KHop | None = None       # a k-hop corpus's task (its ids after the text's); train/val hold its text


# ---------------------------------------------------------------------------------------------------
# Loading


def load_tokens(corpus: str = DEFAULT_CORPUS, tokenizer: str = "byte", *, val_fraction: float = 0.1,
                cache: str | Path | None = None, max_tokens: int | None = None) -> Tokens:
    """Tokens of `corpus` under `tokenizer`, split into train and validation, cached on disk.

    max_tokens caps the corpus at that many UTF-8 bytes of text before splitting: exactly that many
    byte tokens, at most that many BPE tokens. Every call reads and hashes the corpus (its fingerprint
    is its content); the first also tokenizes it, later ones memory-map the cached arrays. A k-hop corpus
    (`khop:…`, `TEXT+khop:…`) is its text's tokens (none for a pure one) with the task in `task`.
    """
    text_corpus, task = khop.split_corpus(corpus)
    if task is not None:
        tokenizer_vocab_size(tokenizer)
        text = None if text_corpus is None else load_tokens(text_corpus, tokenizer, val_fraction=val_fraction,
                                                            cache=cache, max_tokens=max_tokens)
        task = dataclasses.replace(task, offset=text.vocab_size if text else 0)
        empty = np.zeros(0, dtype=np.uint8)
        fingerprint = _sha256_json({"text": text and text.fingerprint, "khop": dataclasses.asdict(task)})
        return Tokens(train=text.train if text else empty, val=text.val if text else empty, fingerprint=fingerprint,
                      vocab_size=task.offset + task.n_tokens, corpus=corpus, tokenizer=tokenizer,
                      tokenizer_file=text and text.tokenizer_file, val_bytes=text and text.val_bytes,
                      trained_vocab_size=text and text.trained_vocab_size, task=task)
    vocab_size = tokenizer_vocab_size(tokenizer)
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
    root = cache_dir(cache)

    val_fraction = float(val_fraction)
    files = corpus_files(corpus, root=root, max_tokens=max_tokens)
    content_sha, _, skipped = _read_corpus(files, corpus, max_tokens)
    if skipped:
        _warn_skipped(f"corpus {corpus!r}", [f"{p} (not UTF-8 text)" for p in skipped])

    @cache_result
    def text() -> str:   # only on a cache miss: read again, and refuse a corpus that changed meanwhile
        sha, read, _ = _read_corpus(files, corpus, max_tokens, keep_text=True)
        if sha != content_sha:
            raise ValueError(f"corpus {corpus!r} changed while it was read; load it again")
        return read

    recipe = {"format": FORMAT_VERSION, "content": content_sha, "val_fraction": val_fraction}
    tokenizer_file, tokenizer_sha = None, None
    if tokenizer != "byte":
        key = _sha256_json({**recipe, "vocab_size": vocab_size})
        tokenizer_file = root / "tokenizers" / f"bpe{vocab_size}-{key[:20]}.json"
        if not tokenizer_file.exists():
            train_text, _ = _split_text(text(), val_fraction, corpus)
            # Each merge joins two adjacent symbols of the text, leaving one symbol fewer: n bytes allow at most
            # n - 1 merges. Refused before the trainer reserves memory for the whole vocabulary (bpe:100000000
            # aborted the process in the Rust allocator)
            n_bytes = len(train_text.encode("utf-8"))
            if vocab_size > 256 + n_bytes - 1:
                raise ValueError(f"tokenizer bpe:{vocab_size} (--tokenizer) asks for more tokens than corpus "
                                 f"{corpus!r} can give: byte-level BPE starts from 256 byte tokens, and its "
                                 f"{n_bytes:,} bytes of training text allow at most {n_bytes - 1:,} merges; use at "
                                 f"most bpe:{255 + n_bytes}")
            _train_bpe(train_text, vocab_size, tokenizer_file)
        tokenizer_sha = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    fingerprint = _sha256_json({**recipe, "tokenizer": tokenizer, "tokenizer_sha256": tokenizer_sha})

    folder = root / "tokens" / fingerprint
    meta = _read_meta(folder)
    if meta is None:
        train_text, val_text = _split_text(text(), val_fraction, corpus)
        train_ids = _encode_text(train_text, tokenizer, tokenizer_file)
        val_ids = _encode_text(val_text, tokenizer, tokenizer_file)
        ids = np.concatenate([train_ids, val_ids]).astype(_token_dtype(vocab_size))
        atomic_write(folder / "tokens.npy", lambda f: np.save(f, ids))
        trained = _load_bpe(str(tokenizer_file)).get_vocab_size() if tokenizer_file else vocab_size
        meta = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "corpus": corpus, "tokenizer": tokenizer,
                "vocab_size": vocab_size, "trained_vocab_size": trained, "content_sha256": content_sha,
                "val_fraction": val_fraction, "max_tokens": max_tokens, "n_train": int(len(train_ids)),
                "n_val": int(len(val_ids)), "val_bytes": len(val_text.encode("utf-8")), "dtype": ids.dtype.name,
                "tokens_sha256": _tokens_sha256(folder / "tokens.npy")}
        # meta.json is written last: its presence says the arrays beside it are complete
        atomic_write(folder / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    if meta["trained_vocab_size"] < 0.9 * vocab_size:
        trained = meta["trained_vocab_size"]
        warnings.warn(f"{tokenizer} learned only {trained} tokens from corpus {corpus!r} (too little text for "
                      f"more merges): a model with vocab_size {vocab_size} wastes {vocab_size - trained} rows of "
                      f"its embedding and head; use tokenizer {f'bpe:{trained}' if trained > 256 else 'byte'}",
                      RuntimeWarning, stacklevel=2)
    ids = np.load(folder / "tokens.npy", mmap_mode="r")
    n_train = meta["n_train"]
    return Tokens(train=ids[:n_train], val=ids[n_train:], fingerprint=fingerprint, vocab_size=vocab_size,
                  corpus=corpus, tokenizer=tokenizer,
                  tokenizer_file=str(tokenizer_file) if tokenizer_file else None, val_bytes=meta["val_bytes"],
                  trained_vocab_size=meta["trained_vocab_size"])


def _read_meta(folder: Path) -> dict | None:
    """The cache entry's meta.json if its token file is complete and unchanged since it was written;
    None (rebuild it) if absent, truncated, older than the checksum, or corrupted (with a warning)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        ids = np.load(folder / "tokens.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (meta.get("format") != FORMAT_VERSION or len(ids) != meta["n_train"] + meta["n_val"]
            or "tokens_sha256" not in meta or "trained_vocab_size" not in meta):
        return None
    if _tokens_sha256(folder / "tokens.npy") != meta["tokens_sha256"]:
        warnings.warn(f"token cache {folder} fails its checksum (tokens.npy changed after it was written): "
                      "rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    return meta


# (path, size, mtime_ns) → sha256 of the token files this process has hashed: a sweep that loads the
# same tokens for 50 runs reads them once (hashing runs at ~1 GB/s; a large corpus would add seconds)
_HASHED: dict[tuple, str] = {}


def _tokens_sha256(path: Path) -> str:
    """sha256 of a token file, remembered while its size and mtime stay the same (writing into the
    file, even in place, changes its mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = _sha256_file(path)
    return _HASHED[key]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _split_text(text: str, val_fraction: float, corpus: str) -> tuple[str, str]:
    # contiguous: the first (1 - val_fraction) of the characters train, the rest validate
    cut = int(len(text) * (1 - val_fraction))
    if cut == 0 or cut == len(text):
        raise ValueError(f"corpus {corpus!r} has {len(text)} characters: too short to split into train and "
                         f"validation with val_fraction={val_fraction}")
    return text[:cut], text[cut:]


def _token_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


# ---------------------------------------------------------------------------------------------------
# Corpora: each resolves to a list of files on disk


def corpus_files(corpus: str, *, root: Path | None = None, max_tokens: int | None = None) -> list[Path]:
    """The files a corpus string stands for, in their fixed order (fetching tinyshakespeare or an
    hf: dataset into the cache first if needed)."""
    root = root if root is not None else cache_dir()
    if not isinstance(corpus, str):
        raise ValueError(f"corpus must be a string, one of: {CORPUS_FORMS}; got {corpus!r}")
    if corpus == "stdlib":
        return stdlib_files()
    if corpus == "tinyshakespeare":
        return [tinyshakespeare_path(root)]
    if corpus.startswith("file:"):
        return text_files(corpus[5:])
    if corpus.startswith("hf:"):
        name, _, config = corpus[3:].partition(":")
        if not name or (":" in corpus[3:] and not config) or ":" in config:
            raise ValueError(f"bad Hugging Face corpus {corpus!r}; expected hf:NAME or hf:NAME:CONFIG")
        return [hf_text_file(name, config or None, max_tokens or DEFAULT_HF_MAX_TOKENS, root)]
    raise ValueError(f"unknown corpus {corpus!r}; expected one of: {CORPUS_FORMS}")


def stdlib_files() -> list[Path]:
    """The standard library's own *.py sources, sorted by relative path, without test suites,
    third-party packages, and the two machine-generated build files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in STDLIB_EXCLUDED_DIRS and not d.startswith("config-"))
        files += [Path(folder) / n for n in names
                  if n.endswith(".py") and not n.startswith("_sysconfigdata")]
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise RuntimeError(f"found no Python sources under the standard library folder {root}")
    return files


def text_files(path: str | Path) -> list[Path]:
    """A file, or every regular file under a folder (recursive, sorted by relative path, hidden entries and
    __pycache__ skipped). Anything else there — a named pipe, a socket, a device, a dangling or looping
    symlink, a symlink to a folder (not followed) — is skipped with a warning naming it: reading a pipe
    would block forever. Which files are UTF-8 text is decided when they are read."""
    if not str(path):
        raise ValueError("a file: corpus needs a path, e.g. file:data/my_text.txt")
    path = Path(path).expanduser()
    kind = _file_kind(path)
    if kind in ("a dangling symlink", "missing"):
        raise FileNotFoundError(f"corpus path {str(path)!r} does not exist"
                                + (" (a dangling symlink)" if kind != "missing" else ""))
    if kind == "file":
        return [path.resolve()]
    if kind != "folder":
        raise ValueError(f"corpus path {str(path)!r} is {kind}, not a file or a folder")
    files, skipped = [], []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for d in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            dirs.remove(d)
            skipped.append(f"{os.path.join(folder, d)} (a symlink to a folder, not followed)")
        for name in (n for n in names if not n.startswith(".")):
            kind = _file_kind(Path(folder) / name)
            if kind == "file":
                files.append(Path(folder) / name)
            else:
                skipped.append(f"{os.path.join(folder, name)} ({kind})")
    if skipped:
        _warn_skipped(f"corpus folder {str(path)!r}", sorted(skipped))
    files.sort(key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise ValueError(f"corpus folder {str(path)!r} holds no files")
    return [f.resolve() for f in files]


def _file_kind(path: Path) -> str:
    """'file', 'folder', 'missing', or what else `path` is, in words (symlinks followed)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a dangling symlink" if path.is_symlink() else "missing"
    except OSError as e:
        return "a symlink loop" if e.errno == errno.ELOOP else f"unreadable ({e.strerror})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def _warn_skipped(where: str, items: list[str]) -> None:
    shown = "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
    warnings.warn(f"{where}: skipped {len(items)} entr{'y' if len(items) == 1 else 'ies'}: {shown}",
                  RuntimeWarning, stacklevel=3)


def tinyshakespeare_path(root: Path | None = None) -> Path:
    """A checksum-verified local copy of tinyshakespeare: $DWLIB_TINYSHAKESPEARE if set, else the
    cached copy, else downloaded once into cache_dir()/corpora/tinyshakespeare.txt."""
    root = root if root is not None else cache_dir()
    target = root / "corpora" / "tinyshakespeare.txt"
    override = os.environ.get("DWLIB_TINYSHAKESPEARE")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"DWLIB_TINYSHAKESPEARE points to {str(path)!r}, which is not a file")
        _check_tinyshakespeare(path.read_bytes(), path)
        return path.resolve()
    if target.exists():
        _check_tinyshakespeare(target.read_bytes(), target)
        return target
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(
            f"could not download tinyshakespeare from {TINYSHAKESPEARE_URL} ({e}). Offline? Put the file "
            f"(sha256 {TINYSHAKESPEARE_SHA256}, {TINYSHAKESPEARE_BYTES:,} bytes) at {target}, "
            f"or set DWLIB_TINYSHAKESPEARE=/path/to/input.txt") from e
    _check_tinyshakespeare(data, TINYSHAKESPEARE_URL)
    atomic_write(target, lambda f: f.write(data))
    return target


def _check_tinyshakespeare(data: bytes, where) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINYSHAKESPEARE_SHA256:
        raise ValueError(
            f"tinyshakespeare at {where} fails its checksum: {len(data):,} bytes with sha256 {digest}, "
            f"expected {TINYSHAKESPEARE_BYTES:,} bytes with sha256 {TINYSHAKESPEARE_SHA256}. "
            f"Replace or delete that file (the original is {TINYSHAKESPEARE_URL}).")


def hf_text_file(name: str, config: str | None, max_bytes: int, root: Path | None = None) -> Path:
    """Stream a Hugging Face dataset's train split once into a cached text file of about max_bytes
    (documents joined by a blank line). Needs the optional `datasets` package."""
    root = root if root is not None else cache_dir()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{config or 'default'}")
    target = root / "corpora" / "hf" / f"{safe}-{max_bytes}.txt"
    if target.exists():
        return target
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"corpus hf:{name} needs the optional Hugging Face `datasets` package: "
                          "pip install datasets") from e
    stream = datasets.load_dataset(name, config, split="train", streaming=True)
    pieces, size, column = [], 0, None
    for example in stream:
        if column is None:
            text_columns = [k for k, v in example.items() if isinstance(v, str)]
            if not text_columns:
                raise ValueError(f"hf:{name} has no text column; its columns are {sorted(example)}")
            column = "text" if "text" in text_columns else text_columns[0]
        piece = example[column]
        pieces.append(piece)
        size += len(piece.encode("utf-8")) + len(FILE_SEPARATOR)
        if size >= max_bytes:
            break
    if not pieces:
        raise ValueError(f"hf:{name} streamed no examples")
    atomic_write(target, lambda f: f.write(FILE_SEPARATOR.join(pieces).encode("utf-8")))
    return target


def _read_corpus(files: list[Path], corpus: str, max_tokens: int | None,
                 keep_text: bool = False) -> tuple[str, str | None, list[Path]]:
    """(sha256, text, skipped) of a corpus. Its text is its UTF-8 files joined by FILE_SEPARATOR, cut at
    max_tokens bytes (dropping a character cut in half); sha256 is the hash of that text's UTF-8 bytes
    (its identity in every fingerprint), text is None unless keep_text, and skipped lists the files left
    out as not UTF-8 text. Files are read one at a time, so hashing holds one file in memory."""
    digest, pieces, skipped, size, first = hashlib.sha256(), [], [], 0, True
    for path in files:
        data = path.read_bytes()
        try:
            if b"\0" in data:   # a NUL byte marks a binary file even when it happens to decode
                raise UnicodeError
            data.decode("utf-8")
        except UnicodeError:
            skipped.append(path)
            continue
        piece = data if first else FILE_SEPARATOR.encode() + data
        first = False
        cut = max_tokens is not None and size + len(piece) >= max_tokens
        if cut:
            piece = piece[:max_tokens - size].decode("utf-8", errors="ignore").encode("utf-8")
        digest.update(piece)
        size += len(piece)
        if keep_text:
            pieces.append(piece)
        if cut:
            break
    if len(files) == 1 and skipped:
        raise ValueError(f"corpus {corpus!r}: {files[0]} is not UTF-8 text")
    if size == 0:
        raise ValueError(f"corpus {corpus!r} holds no UTF-8 text")
    return digest.hexdigest(), b"".join(pieces).decode("utf-8") if keep_text else None, skipped


# ---------------------------------------------------------------------------------------------------
# Tokenizers


def _train_bpe(text: str, vocab_size: int, target: Path) -> None:
    # Byte-level BPE (GPT-2 style): every byte is in the base alphabet, so any text round-trips.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((text[i:i + (1 << 20)] for i in range(0, len(text), 1 << 20)), trainer=trainer)
    atomic_write(target, lambda f: f.write(tok.to_str().encode("utf-8")))


@lru_cache(maxsize=8)
def _load_bpe(path: str):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(path)


# A newline with non-space characters on both sides ends every pre-token that could reach it, so
# cutting the text there and encoding the pieces in parallel gives exactly the ids of one long encode.
_SAFE_CUT = re.compile(r"(?<=\S\n)(?=\S)")


def _bpe_encode(tok, text: str, chunk_chars: int = 1 << 16) -> np.ndarray:
    pieces, start = [], 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + chunk_chars) if start + chunk_chars < len(text) else None
        end = cut.start() if cut else len(text)
        pieces.append(text[start:end])
        start = end
    ids = [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(pieces)]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)


def _encode_text(text: str, tokenizer: str, tokenizer_file: Path | None) -> np.ndarray:
    if tokenizer == "byte":
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return _bpe_encode(_load_bpe(str(tokenizer_file)), text)


def _resolve_tokenizer(tokenizer) -> tuple[str, str | None]:
    if isinstance(tokenizer, Tokens):
        return tokenizer.tokenizer, tokenizer.tokenizer_file
    tokenizer_vocab_size(tokenizer)
    if tokenizer != "byte":
        raise ValueError(f"a {tokenizer} tokenizer is trained per corpus: pass the Tokens that "
                         "load_tokens returned instead of the string")
    return tokenizer, None


def encode(text: str, tokenizer: str | Tokens = "byte") -> list[int]:
    """Token ids of `text`: tokenizer is 'byte' or the Tokens of a load_tokens call (for BPE)."""
    spec, path = _resolve_tokenizer(tokenizer)
    if not isinstance(text, str):
        raise ValueError(f"encode takes a str, got {type(text).__name__}")
    return _encode_text(text, spec, path).astype(np.int64).tolist()


def decode(ids, tokenizer: str | Tokens = "byte") -> str:
    """Text of token ids (a list, array or tensor); invalid UTF-8 from a sampled sequence shows as �."""
    spec, path = _resolve_tokenizer(tokenizer)
    ids = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64).reshape(-1)
    vocab_size = tokenizer_vocab_size(spec)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}) for {spec}; got min {ids.min()}, max {ids.max()}")
    if spec == "byte":
        return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
    return _load_bpe(path).decode(ids.tolist(), skip_special_tokens=False)


# ---------------------------------------------------------------------------------------------------
# Batches


def _check_ints(minimum: int, **values) -> None:   # minimum 1: positive, 0: non-negative
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{name} must be a {kind} integer, got {value!r}")


def _check_windows(data: np.ndarray, context: int, what: str) -> None:
    if data.ndim != 1:
        raise ValueError(f"{what} must be a 1-D token array, got shape {data.shape}")
    if len(data) < context + 1:
        raise ValueError(f"{what} has {len(data)} tokens, fewer than context + 1 = {context + 1} "
                         "needed for one (input, target) window: use a bigger corpus or a shorter context")


def get_batch(data: np.ndarray, step: int, batch_size: int, context: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of a run seeded `seed`: (x, y) int64 of shape (batch_size, context), y = x shifted
    by one token. Random windows lying wholly inside `data`, a pure function of (seed, step), so a
    resumed run sees exactly the batches it would have seen."""
    _check_ints(1, batch_size=batch_size, context=context)
    _check_ints(0, step=step, seed=seed)
    data = np.asarray(data)             # a view, not a copy, for a memory map
    _check_windows(data, context, "data")
    rng = np.random.default_rng([int(seed), int(step)])
    starts = rng.integers(0, len(data) - context, size=batch_size)
    return _windows(data, starts, context)


def train_batch(tokens: Tokens, step: int, batch_size: int, context: int,
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of a run on `tokens`: text windows (`get_batch`); for a k-hop corpus k-hop rows, which in
    a mixed corpus take the place of the text windows of a fraction of the rows."""
    task = tokens.task
    if task is None:
        return get_batch(tokens.train, step, batch_size, context, seed)
    x, y = khop.batch(task, step, batch_size, context, seed)
    if task.fraction is None:
        return x, y
    text_x, text_y = get_batch(tokens.train, step, batch_size, context, seed)
    rows = khop.task_rows(task, step, batch_size, seed)[:, None]
    return torch.where(rows, x, text_x), torch.where(rows, y, text_y)


def val_batches(tokens: Tokens | np.ndarray, n_batches: int, batch_size: int,
                context: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed list of n_batches (x, y) batches from the validation tokens: windows evenly spaced from
    the start to the end of tokens.val, the same for every model scored on these tokens. Windows
    overlap when the validation split is shorter than n_batches·batch_size·(context+1)."""
    _check_ints(1, n_batches=n_batches, batch_size=batch_size, context=context)
    data = np.asarray(tokens.val if isinstance(tokens, Tokens) else tokens)
    _check_windows(data, context, "the validation split")
    starts = np.linspace(0, len(data) - context - 1, n_batches * batch_size).round().astype(np.int64)
    return [_windows(data, starts[i * batch_size:(i + 1) * batch_size], context) for i in range(n_batches)]


def _windows(data: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = torch.from_numpy(data[starts[:, None] + np.arange(context + 1)].astype(np.int64))
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


# ---------------------------------------------------------------------------------------------------
# Small helpers


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def atomic_write(path: Path, write, what: str = "the dwlib cache: $DWLIB_CACHE or ~/.cache/dwlib") -> None:
    """Call write(f) on a file beside `path` under a unique name, then rename it into place: readers (and a
    second process writing the same file) only ever see a complete file. On any failure the partial file
    is removed; an OSError is raised again naming the path and `what` it is (see `write_error`). The
    folder is made if needed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(e, path, what) from e
    finally:
        if tmp.exists():
            tmp.unlink()


def write_error(error: BaseException, path, what: str) -> OSError:
    """The OSError to raise when writing `path` failed with `error`: "no space left on device: PATH (what)"
    when the disk is full — `error`, or an error it was raised while handling, is ENOSPC or EDQUOT (torch
    hides it under a RuntimeError), or the write was short with no errno (numpy's) and under 1 MiB is
    left there — else "cannot write PATH (what): the error"."""
    full, e = False, error
    while e is not None:
        full = full or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
        e = e.__cause__ or e.__context__
    if not full and getattr(error, "errno", None) is None:
        try:
            full = shutil.disk_usage(Path(path).parent).free < 1 << 20
        except OSError:
            pass
    if full:
        return os_error(errno.ENOSPC, f"no space left on device: {path} ({what})")
    return os_error(getattr(error, "errno", None), f"cannot write {path} ({what}): {error}")


def os_error(number: int | None, message: str) -> OSError:
    """An OSError with this errno whose text is `message` alone (OSError(errno, text) prints "[Errno N] text")."""
    error = OSError(message)
    error.errno = number
    return error
