"""Shared test setup: one torch thread (tests run beside other processes on 2 cores, where 2-thread
OpenMP slows ~50x), a private cache dir, and stand-ins for data files a clone does not have."""
import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
# train() sizes its threads from $DWLIB_THREADS; subprocesses (CLI, sweeps, notebooks) inherit it
os.environ.setdefault("DWLIB_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    # one cache per test session: token caches are reused across tests but never touch ~/.cache
    monkeypatch.setenv("DWLIB_CACHE", str(tmp_path_factory.getbasetemp() / "dwlib-cache"))


@pytest.fixture
def shakespeare_path(tmp_path, monkeypatch):
    """A stand-in for tinyshakespeare (1.2 MB, starting like the real file) whose checksum the data module
    is told to expect: the local-copy, cache and checksum paths are exercised on any machine, without the
    real file or a download."""
    import hashlib

    from dwlib import data
    verse = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    body = (verse * (1_200_000 // len(verse) + 1)).encode()
    path = tmp_path / "tinyshakespeare.txt"
    path.write_bytes(body)
    monkeypatch.setattr(data, "TINYSHAKESPEARE_SHA256", hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(data, "TINYSHAKESPEARE_BYTES", len(body))
    return path


@pytest.fixture
def read_only():
    """make(path): make a file or folder unwritable for real, undone after the test. chmod a-w does
    not stop root, so as root the file is made immutable (chattr +i), which does."""
    undo = []

    def make(path):
        path = Path(path)
        if os.geteuid() != 0:
            mode = path.stat().st_mode
            path.chmod(mode & ~0o222)
            undo.append(lambda: path.chmod(mode))
            return
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and chattr +i failed ({done.stderr.strip()}): cannot make "
                        f"{path} read-only for real")
        undo.append(lambda: subprocess.run(["chattr", "-i", str(path)], check=True))

    yield make
    for step in reversed(undo):
        step()


@pytest.fixture
def full_disk(tmp_path):
    """A real filesystem with no room left: a 256 KiB tmpfs filled up (mounting needs root; skipped
    otherwise). Yields its folder; unmounted after the test."""
    mount = tmp_path / "full-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()})")
    try:
        with open(mount / "filler", "wb", buffering=0) as f:
            with contextlib.suppress(OSError):   # ENOSPC: full
                while True:
                    f.write(b"\0" * 4096)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
