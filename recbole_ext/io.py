"""Atomic file writes and output names that are unique across processes (layer 0: imports nothing of ours).

A reader sees either the old file or the complete new one, never a partial write; two trainers (of
one process or of processes started in the same second) never claim the same output name.
"""

import os
import tempfile

import torch

_CLAIMED_PATHS = set()


def atomic_write(path, write, mode="wb"):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file gets the mode open() would give
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj, path):
    """``torch.save`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def unique_path(path):
    """``path``, or ``<stem>-<n><ext>`` if that file exists or another trainer of this process has
    claimed it. RecBole names checkpoints ``<Model>-<local time to the second>.pth``: two runs
    started in the same second (a post-training run right after its pretraining run) would
    otherwise overwrite each other's checkpoint."""
    stem, ext = os.path.splitext(path)
    candidate, n = path, 0
    while candidate in _CLAIMED_PATHS or os.path.exists(candidate):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    _CLAIMED_PATHS.add(candidate)
    return candidate
