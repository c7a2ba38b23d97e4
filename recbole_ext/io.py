"""Atomic file writes, output names unique across processes, writable output folders (layer 0).

A reader sees either the old file or the complete new one, never a partial write; two trainers (of
one process or of processes started in the same second) never claim the same output name; a writer
killed in the middle of a save leaves a temporary file that names its process
(``.tmp-<pid>@<host>.<random>``), and the next writer into that folder removes it.
"""

import os
import re
import socket
import tempfile

import torch

from recbole_ext.errors import ConfigError

_CLAIMED_PATHS = set()
_SWEPT_DIRS = set()
_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"
_TEMP_NAME = re.compile(r"^\.tmp-(\d+)@(.+)\.[A-Za-z0-9_]+$")


def _temp_prefix():
    return f".tmp-{os.getpid()}@{_HOST}."


def atomic_write(path, write, mode="wb"):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if directory not in _SWEPT_DIRS:
        remove_stale_temp_files(directory)
        _SWEPT_DIRS.add(directory)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(), dir=directory)
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


def remove_stale_temp_files(directory):
    """Remove the temporary files that writers of this host left in ``directory`` when they were killed
    during a save (their process no longer exists); return their paths."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and match.group(2) == _HOST and not _process_alive(int(match.group(1))):
            try:
                os.remove(entry.path)
                removed.append(entry.path)
            except OSError:  # removed by another writer meanwhile, or not ours to remove
                pass
    return removed


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to another user, or cannot be asked: keep its files
        return True
    return True


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj, path):
    """``torch.save`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def unique_path(path, ext=None):
    """``<stem>-<pid><ext>``, or ``<stem>-<pid>-<n><ext>`` if that exists or another trainer of this process
    has claimed it. ``ext`` (default: the file extension) is the tail the process id goes before.

    RecBole names checkpoints ``<Model>-<local time to the second>.pth``: two runs started in the same
    second — in one process (a post-training run right after its pretraining run) or in two — would
    otherwise write the same file, and one run would evaluate the other's model."""
    if ext is None:
        ext = os.path.splitext(path)[1]
    stem = path[: len(path) - len(ext)] if ext else path
    base = f"{stem}-{os.getpid()}"
    candidate, n = base + ext, 0
    while os.path.abspath(candidate) in _CLAIMED_PATHS or os.path.exists(candidate):
        n += 1
        candidate = f"{base}-{n}{ext}"
    _CLAIMED_PATHS.add(os.path.abspath(candidate))
    return candidate


def check_writable_dir(path, key):
    """Create folder ``path`` if needed and check that a file can be written there, so that a run fails
    before training rather than when it saves; :class:`ConfigError` naming the config ``key`` otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix(), dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(
            f"{key} '{path}' is not a folder this run can write to ({reason}): set {key} to a writable "
            f"folder (--{key}=<folder>)"
        ) from err
