"""Files symdiff writes: atomic saves that keep the target's mode, and the leftovers of killed processes.

A save goes to a temporary file next to its target (``.<target>.<pid>-<random>.symdiff-tmp``) and is then
renamed over it, so a reader sees the old file or the new one, never half of one. The process id in a
temporary name lets a later process tell the leftovers of a killed one from work still running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["atomic_savez", "process_gone", "write_npz"]


def process_gone(pid: str) -> bool:
    """True when ``pid`` (a decimal string) names no running process; False when it runs or nobody can tell.

    Only POSIX answers this cheaply (signal 0); elsewhere nothing is taken for gone.
    """
    if os.name != "posix" or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


TMP_SUFFIX = ".symdiff-tmp"  # temporary files: .<target name>.<pid>-<random>.symdiff-tmp, next to the target


def remove_stale_temps(folder: str, base: str) -> None:
    """Delete temporary files that an earlier save of ``base`` left behind when its process was killed."""
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(TMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        if process_gone(name[len(prefix) : -len(TMP_SUFFIX)].split("-", 1)[0]):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def write_npz(fh: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """The ``.npz`` format of ``np.savez``, with names taken as data (``np.savez(**arrays)`` reserves ``file``)."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], what: str = "arrays") -> None:
    """Write ``arrays`` to ``path`` as an ``.npz``: to a temporary file next to it, then renamed over it.

    An existing target keeps its permissions; a new one gets those of a plain ``open()`` (the umask applies).
    A symlink is saved through: its target gets the new content and the link stays.
    Temporary files of saves that were killed are removed by the next save of the same target.
    An ``OSError`` (a missing folder, a directory in the way, a symlink loop) is re-raised as the same
    ``OSError`` subclass, saying ``cannot save <what> to '<path>'`` rather than naming the temporary file.
    """
    given = os.fspath(path)
    try:
        _atomic_savez(given, arrays)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot save {what} to {given!r}: {exc.strerror or exc}") from None


def _atomic_savez(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """:func:`atomic_savez`, with the temporary file's name in its OS errors."""
    path = os.path.realpath(path)  # through a symlink to its target: the link itself stays a link
    folder, base = os.path.split(path)
    remove_stale_temps(folder, base)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666 if mode is None else mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)  # the umask may have narrowed it at creation
            write_npz(fh, arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
