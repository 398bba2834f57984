"""An append-only JSONL record of a folder-sized job, for resuming it after any interruption.

The first line describes the job (what was run with which settings); each further line is
one finished item. Lines are flushed and synced one by one, so a job killed at any moment
(even by SIGKILL) leaves at most one partial last line, which is dropped on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fakelab.errors import InputError


class LedgerError(InputError):
    pass


class Ledger:
    def __init__(self, path: str | os.PathLike, header: dict, key: str = "file"):
        self.path = Path(path)
        self.header = header
        self.key = key
        self.entries: list[dict] = []
        self._handle = None

    def open(self, restart: bool = False) -> set[str]:
        """Open for appending; returns the keys of items already recorded by an earlier run
        of the same job. A ledger of another job is an error (unless `restart`)."""
        if self.path.is_dir():
            raise LedgerError(f"the ledger {self.path} is a folder: give a file path")
        lines = []
        if self.path.exists() and not restart:
            lines = self._read_complete_lines()
            if lines and lines[0] != {"job": self.header}:
                raise LedgerError(
                    f"{self.path} records another job (other input, checkpoint or settings): "
                    "give another --ledger path or --restart"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w" if not lines else "a", encoding="utf-8")
        if not lines:
            self._write({"job": self.header})
        self.entries = lines[1:]
        return {entry[self.key] for entry in self.entries}

    def _read_complete_lines(self) -> list[dict]:
        """The lines before the first partial or unreadable one; the file is cut there."""
        good, offset = [], 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                try:
                    good.append(json.loads(raw))
                except ValueError:
                    break
                offset += len(raw)
        with open(self.path, "r+b") as handle:
            handle.truncate(offset)
        return good

    def _write(self, entry: dict) -> None:
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def record(self, entry: dict) -> None:
        self._write(entry)
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
