"""Where a sweep keeps its finished cells, so that an interrupted sweep resumes.

A sweep folder holds `sweep.json` (the settings the cells were computed with) and one
`cells/<perturbation>-<level>.json` per finished (perturbation, level) cell, written
atomically. A cell already on disk is read back, not recomputed. Settings that differ from
those on disk would mix incomparable numbers, so they are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fakelab.atomic import atomic_output
from fakelab.errors import InputError

PathLike = str | os.PathLike
SETTINGS = "sweep.json"


class CellStore:
    def __init__(self, folder: PathLike, settings: dict, restart: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder} is a file; the output must be a folder")
        self.cells = self.folder / "cells"
        self.examples = self.folder / "examples"
        settings_path = self.folder / SETTINGS
        if settings_path.exists() and not restart:
            try:
                stored = json.loads(settings_path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise InputError(f"{settings_path} is not a sweep's settings file ({error}); use --restart") from None
            if stored != json.loads(json.dumps(settings)):
                changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
                raise InputError(
                    f"{self.folder} holds a sweep made with other settings ({', '.join(changed)}); "
                    "use another folder or --restart"
                )
        self.cells.mkdir(parents=True, exist_ok=True)
        self.examples.mkdir(parents=True, exist_ok=True)
        if restart:
            for stale in self.cells.glob("*.json"):
                stale.unlink()
        with atomic_output(settings_path) as tmp:
            tmp.write_text(json.dumps(settings, indent=2) + "\n")

    def _path(self, name: str, level: int) -> Path:
        return self.cells / f"{name}-{level}.json"

    def load(self, name: str, level: int) -> dict | None:
        path = self._path(name, level)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a cell written by something else: computed again

    def save(self, name: str, level: int, cell: dict) -> None:
        with atomic_output(self._path(name, level)) as tmp:
            tmp.write_text(json.dumps(cell, indent=1) + "\n")

    def pending(self, cells: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        return [cell for cell in cells if self.load(*cell) is None]

    def fill(
        self,
        cells: Sequence[tuple[str, int]],
        units: Sequence,
        compute: Callable[[str, int, object], dict],
        progress: Callable[[Iterable, int], Iterable] | None = None,
        map_cells: Callable | None = None,
    ) -> dict[tuple[str, int], dict]:
        """Compute each pending cell unit by unit (`compute(name, level, unit)` gives one
        record), store it when its last unit is done, and return every cell as stored.

        `map_cells(compute, cells, units)`, when given, computes whole cells elsewhere (on Ray:
        `fakelab.scale.cells`) and yields ((name, level), records) as each finishes; the
        progress then counts cells."""
        pending = self.pending(cells)
        if map_cells is not None:
            finished = map_cells(compute, pending, units)
            for (name, level), records in progress(finished, len(pending)) if progress else finished:
                self.save(name, level, {"results": records})
            return {cell: self.load(*cell) for cell in cells}
        steps = ((cell, unit) for cell in pending for unit in units)
        steps = progress(steps, len(pending) * len(units)) if progress else steps
        records: dict[tuple[str, int], list[dict]] = {cell: [] for cell in pending}
        for (name, level), unit in steps:
            records[(name, level)].append(compute(name, level, unit))
            if len(records[(name, level)]) == len(units):
                self.save(name, level, {"results": records.pop((name, level))})
        return {cell: self.load(*cell) for cell in cells}

    def example_path(self, name: str, level: int) -> Path:
        return self.examples / f"{name}-{level}.png"

    def save_example(self, name: str, level: int, image: np.ndarray) -> None:
        from fakelab.video import save_image

        save_image(self.example_path(name, level), image)  # atomic
