"""Write outputs so that a crash or an interrupt never leaves a half-written file.

`atomic_output` makes each file appear whole or not at all. `all_or_nothing` extends that
to a whole command: files (and folders) created inside the block are removed again if the
block ends in an exception or an interrupt, so a command that writes several outputs
leaves none of them behind when it fails half-way. Commands that checkpoint and resume
(training, dataset preparation) keep what they finished instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator

# The stack of open `all_or_nothing` blocks: what each created, to undo on failure.
_transactions: list[list[Path]] = []


@contextlib.contextmanager
def all_or_nothing(enabled: bool = True) -> Iterator[None]:
    """Remove the files and folders that `atomic_output` created in this block if it fails."""
    if not enabled:
        yield
        return
    created: list[Path] = []
    _transactions.append(created)
    try:
        yield
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    if not any(path.iterdir()):
                        path.rmdir()
                else:
                    path.unlink()
        raise
    finally:
        _transactions.remove(created)


def _record_created(path: Path) -> None:
    for created in _transactions:
        created.append(path)


def _make_parents(folder: Path) -> None:
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    for parent in reversed(missing):
        _record_created(parent)


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    The temporary file keeps the target's suffix so that writers choosing a
    format by extension (PyAV, Pillow) pick the right one.
    """
    target = Path(path)
    _make_parents(target.parent)
    # An interrupt between creating the temporary file and entering `try` would leak it:
    # signals wait until the file is known, then arrive inside `try`, which removes it.
    mask = _block_interrupts()
    try:
        handle, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent
        )
        tmp = Path(tmp_name)
        try:
            os.close(handle)
            _restore(mask)
            yield tmp
            # mkstemp creates the file 0600 (and some writers replace it): a finished output
            # gets the mode any new file would get.
            os.chmod(tmp, 0o666 & ~current_umask())
            existed = target.exists()
            os.replace(tmp, target)
            if not existed:
                _record_created(target)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        _restore(mask)


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _block_interrupts():
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    except (AttributeError, OSError, ValueError):  # no POSIX signal masks here
        return None


def _restore(mask) -> None:
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
