"""Checks every command runs before it starts work, so that bad input fails in one line.

Three kinds of helpers, all shared by every command (see docs/reliability.md):

- argparse types for numbers (`integer(1)`, `number(0, 1)`, ...) that refuse NaN,
  infinities and out-of-range values, and `device` for `--device`;
- `check_paths(inputs=..., outputs=..., side_outputs=..., output_dirs=...)`, called by a
  command's handler with all its inputs and everything it will write, before any model
  loads: inputs exist and are regular readable files (or folders), outputs are not
  folders, not inputs (after resolving links), their folder can be written, their names
  fit, and the disk has room where the size is known;
- `describe_os_error` and `termination_signals`, used by `fakelab.cli.main` to turn
  OSErrors into one line and SIGTERM/SIGHUP into a clean interrupt.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import shutil
import signal
import stat
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from fakelab.errors import InputError

PathLike = str | os.PathLike

# The least free space an output folder must have when the output's size is not known.
MIN_FREE_BYTES = 16 * 1024 * 1024
# Most characters of one path component on the usual file systems (ext4, xfs, btrfs, tmpfs).
NAME_MAX = 255


# --------------------------------------------------------------------------- numbers


def _range_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum:g} and {maximum:g}"
    if minimum is not None:
        return f"at least {minimum:g}"
    return f"at most {maximum:g}"


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_range_text(minimum, maximum)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    fractions: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite number within [minimum, maximum] (and > `above` if given).

    With `fractions`, '16/255' is accepted too. NaN and infinities are always refused.
    """

    def parse(text: str) -> float:
        try:
            value = float(Fraction(text.strip())) if fractions and "/" in text else float(text)
        except (ValueError, ZeroDivisionError, OverflowError):
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be above {above:g}, got {value:g}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_range_text(minimum, maximum)}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = integer(1)
non_negative_int = integer(0)
probability = number(0.0, 1.0)
positive_number = number(above=0.0)
seed = integer(0, 2**32 - 1)


def device(text: str) -> str:
    """An argparse type for `--device`: cpu, or a CUDA device that exists here."""
    text = text.strip()
    if text == "cpu":
        return text
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (use cpu)")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return text
    raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu or cuda")


def device_or_auto(text: str) -> str:
    """`device`, or `auto` (a GPU when there is one)."""
    return "auto" if text.strip() == "auto" else device(text)


# --------------------------------------------------------------------------- paths


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _stat(path: Path, what: str) -> os.stat_result | None:
    """os.stat, with a one-line InputError for everything but 'does not exist' (None)."""
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError(f"{what} {path} is a broken symbolic link") from None
        return None
    except OSError as error:
        raise InputError(f"{what} {path}: {describe_os_error(error, with_path=False)}") from None


# atomic_output writes `.NAME.XXXXXXXX.partial.SUFFIX` first: the name must leave room for that.
TEMPORARY_NAME_EXTRA = 20


def check_name(path: Path, what: str, extra: int = 0) -> None:
    parts = path.parts
    for index, part in enumerate(parts):
        limit = NAME_MAX - (extra if index == len(parts) - 1 else 0)
        if len(os.fsencode(part)) > limit:
            raise InputError(
                f"{what} name is too long ({len(os.fsencode(part))} bytes; at most {limit}): {part[:40]}..."
            )


def check_suffix(path: PathLike | None, allowed: Iterable[str], what: str = "output") -> None:
    """`path` ends in one of the `allowed` suffixes (case-insensitive), e.g. ('.mp4', '.gif')."""
    if path is None:
        return
    allowed = tuple(allowed)
    if not str(path).lower().endswith(allowed):
        raise InputError(f"{what} {path} must end in {', '.join(allowed)}")


def config_file(name_or_path: str | None) -> Path | None:
    """The file a `--config` value names, or None for a bundled config name."""
    if name_or_path is None:
        return None
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.path.lexists(path) or os.sep in str(name_or_path):
        return path
    return None


def check_input(path: PathLike, what: str = "input", kind: str = "file") -> Path:
    """`path` exists and is a readable regular file (`kind="file"`), folder ("dir") or either ("any")."""
    path = Path(path)
    check_name(path, what)
    info = _stat(path, what)
    if info is None:
        raise InputError(f"{what} {path} does not exist")
    is_dir, is_file = stat.S_ISDIR(info.st_mode), stat.S_ISREG(info.st_mode)
    if kind == "file" and not is_file:
        raise InputError(f"{what} {path} is {_kind(info.st_mode)}, not a file")
    if kind == "dir" and not is_dir:
        raise InputError(f"{what} {path} is {_kind(info.st_mode)}, not a folder" if not is_file else f"{what} {path} is a file, not a folder")
    if kind == "any" and not (is_dir or is_file):
        raise InputError(f"{what} {path} is {_kind(info.st_mode)}, not a file or folder")
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise InputError(f"{what} {path} cannot be read (permission denied)")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest ancestor of `path` that exists (outputs' missing folders are created)."""
    parent = path.absolute().parent
    while True:
        info = _stat(parent, f"the folder of {what}")
        if info is not None:
            if not stat.S_ISDIR(info.st_mode):
                raise InputError(f"cannot write {what} {path}: {parent} is a file, not a folder")
            return parent
        parent = parent.parent


def _check_writable_folder(folder: Path, target: Path, what: str) -> None:
    # A probe file, not os.access: it also catches read-only file systems, and root.
    try:
        handle, name = tempfile.mkstemp(prefix=".fakelab-probe.", dir=folder)
    except OSError as error:
        raise InputError(f"cannot write {what} {target}: {describe_os_error(error, with_path=False)} in {folder}") from None
    os.close(handle)
    os.unlink(name)


def _check_free_space(folder: Path, target: Path, what: str, size: int | None) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    needed = max(size or 0, MIN_FREE_BYTES)
    if free < needed:
        raise InputError(
            f"not enough free space for {what} {target}: {free / 1e6:.1f} MB free in {folder}, "
            f"{needed / 1e6:.1f} MB needed"
        )


def check_output(
    path: PathLike,
    inputs: Iterable[PathLike] = (),
    what: str = "output",
    size: int | None = None,
    side: bool = False,
) -> Path:
    """`path` can be written: not a folder or special file, not one of `inputs`, its folder writable.

    `side` marks a file written beside the main output (NAME.report.md, NAME.boxes.json, ...):
    it must not already exist, because the user did not name it.
    """
    path = Path(path)
    check_name(path, what, TEMPORARY_NAME_EXTRA)
    info = _stat(path, what)
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{what} {path} is an existing folder: give a file name")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {path} is {_kind(info.st_mode)}, not a file that can be replaced")
    for item in inputs:
        if item is None or not Path(item).exists():
            continue
        if _same_file(path, Path(item)) if info is not None else os.path.realpath(path) == os.path.realpath(item):
            raise InputError(f"{what} {path} is the input {item}: writing it would destroy the input")
    folder = _existing_ancestor(path, what)
    _check_writable_folder(folder, path, what)
    _check_free_space(folder, path, what, size)
    return path


def check_output_dir(path: PathLike, inputs: Iterable[PathLike] = (), what: str = "output folder") -> Path:
    """`path` is a folder (or can become one) that can be written, and is none of `inputs`."""
    path = Path(path)
    check_name(path, what)
    info = _stat(path, what)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {path} is {'a file' if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)}, not a folder")
    for item in inputs:
        if item is not None and Path(item).exists() and os.path.realpath(item) == os.path.realpath(path):
            raise InputError(f"{what} {path} is the input {item}: choose another folder")
    folder = path if info is not None else _existing_ancestor(path, what)
    _check_writable_folder(folder, path, what)
    _check_free_space(folder, path, what, None)
    return path


Paths = Iterable[PathLike | None] | Mapping[str, PathLike | Iterable[PathLike] | None]


def _labelled(paths: Paths, default: str) -> list[tuple[str, Path]]:
    """[(what, path)] from a list of paths, or from {what: path or paths} (e.g. {"checkpoint": ...})."""
    if isinstance(paths, Mapping):
        pairs = []
        for what, value in paths.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs += [(what, Path(v)) for v in values if v is not None]
        return pairs
    return [(default, Path(p)) for p in paths if p is not None]


def check_paths(
    inputs: Paths = (),
    outputs: Iterable[PathLike | None] = (),
    side_outputs: Iterable[PathLike | None] = (),
    output_dirs: Iterable[PathLike | None] = (),
    input_dirs: Paths = (),
    output_size: int | None = None,
) -> None:
    """Everything a command reads and writes, checked before it starts (see `check_output`).

    `None` entries are skipped, so optional options can be passed as they are. Inputs may be
    given as {"checkpoint": path, ...} so that messages name them; a name ending in "folder"
    (in `input_dirs`, default "input folder") must be a folder. Outputs may not coincide with
    one another either.
    """
    labelled = _labelled(inputs, "input") + _labelled(input_dirs, "input folder")
    for what, item in labelled:
        check_input(item, what, kind="dir" if what.endswith("folder") else "file")
    inputs = [item for what, item in labelled if not what.endswith("folder")]
    input_dirs = [item for what, item in labelled if what.endswith("folder")]
    outputs = [Path(p) for p in outputs if p is not None]
    side_outputs = [Path(p) for p in side_outputs if p is not None]
    written: list[Path] = []
    for item, side in [(p, False) for p in outputs] + [(p, True) for p in side_outputs]:
        what = "side output" if side else "output"
        check_output(item, inputs, what, output_size if not side else None)
        if side and item.exists() and not any(p.exists() for p in outputs):
            raise InputError(
                f"{what} {item} already exists and was not written by an earlier run of this command: "
                "move it or choose another output name"
            )
        if any(os.path.realpath(item) == os.path.realpath(other) for other in written):
            raise InputError(f"{what} {item} is given twice")
        written.append(item)
    for item in output_dirs:
        if item is not None:
            check_output_dir(item, inputs + input_dirs)


# --------------------------------------------------------------------------- OS errors

_ERRNO_TEXT = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.EROFS: "read-only file system",
    errno.EEXIST: "already exists",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error",
    errno.EXDEV: "cannot move across file systems",
    errno.ENXIO: "no such device",
    errno.EFBIG: "file too large",
}


def describe_os_error(error: OSError, with_path: bool = True) -> str:
    """One line for an OSError: what went wrong, and on which file."""
    text = _ERRNO_TEXT.get(error.errno) or (error.strerror or str(error) or type(error).__name__)
    text = text.splitlines()[0] if text else type(error).__name__
    if not with_path:
        return text
    names = [name for name in (error.filename, error.filename2) if name]
    return f"{text}: {' -> '.join(str(name) for name in names)}" if names else text


# --------------------------------------------------------------------------- signals


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every cleanup that handles Ctrl-C runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


_received: list[int] = []


def _raise_terminated(signum, _frame) -> None:
    # A second SIGTERM (a supervisor repeating itself) must not interrupt the cleanup this one starts.
    for sig in TERMINATION_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _received.append(signum)
    raise Terminated(signum)


def termination_received() -> Terminated | None:
    """The stop a SIGTERM or SIGHUP asked for, also when the exception it raised was turned into
    another one on its way up (a signal during a C extension's import surfaces as ImportError)."""
    return Terminated(_received[-1]) if _received else None


@contextlib.contextmanager
def termination_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()  # a stop belongs to the run it interrupted
    previous = {}
    for sig in TERMINATION_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_exit_code(interrupt: BaseException) -> int:
    """128 + the signal number, as shells report a process killed by it."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)
