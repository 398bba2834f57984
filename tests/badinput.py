"""Helper for bad-input tests: run one `fakelab` command line and check that it fails cleanly.

A case is one line of a table: the command line (with {placeholders} for files the
`Workspace` provides), a piece of the expected error message, and the exit code:

    ("animate {img} {vid} -o {out}/a.mp4 --best-frame -1", "--best-frame: must be at least 0", 2),

`assert_fails_cleanly(workspace, capfd, line, message, code)` runs it in-process through
`fakelab.cli.main` and asserts: that exit code; stderr is exactly one line, contains the
message and no traceback; no file appeared, vanished or changed anywhere in the workspace;
the shared media named on the command line are byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from pathlib import Path

from fakelab.cli import main

HASHED_BYTES = 64 * 1024 * 1024


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): kind, size and content hash of files."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                entries[str(path.relative_to(root))] = ("file", info.st_size, file_hash(path))
            else:
                entries[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), 0, "")
    return entries


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(HASHED_BYTES))
    return digest.hexdigest()


def named_files(argv: list[str], under: Path) -> dict[str, str]:
    """Hashes of the regular files under `under` that the command line names."""
    hashes = {}
    for arg in argv:
        path = Path(arg)
        if str(path).startswith(str(under)) and path.is_file() and not path.is_symlink():
            hashes[arg] = file_hash(path)
    return hashes


def assert_fails_cleanly(workspace, capfd, line: str, message: str, code: int = 1) -> str:
    """Run `fakelab <line>` and check the clean failure described above; returns stderr."""
    argv = [part.format(**workspace.places) for part in shlex.split(line)]
    before = fingerprint(workspace.root)
    media_before = named_files(argv, workspace.media)
    capfd.readouterr()
    returned = main(argv)
    out, err = capfd.readouterr()
    assert returned == code, f"exit {returned}, expected {code}: {err or out}"
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], f"stderr is not one line: {err!r}"
    assert message.lower() in lines[0].lower(), f"{message!r} not in {lines[0]!r}"
    after = fingerprint(workspace.root)
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(name for name in set(before) & set(after) if before[name] != after[name])
    assert not (new or gone or changed), f"new {new}, gone {gone}, changed {changed}"
    assert named_files(argv, workspace.media) == media_before, "a shared input file changed"
    return lines[0]
