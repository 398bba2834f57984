"""`fakelab stress ... --ray`: the cells of a sweep spread over Ray actors.

A sweep is a grid of (perturbation, level) cells, each computed over every clip (or
source/driving pair). Each actor receives the scorer or animator and the clips once, through
Ray's object store, and then computes whole cells, so that a detector is loaded once per actor
and the frames cross the network once per machine. Cells come back as they finish and the
sweep's store writes each at once, which is what lets an interrupted sweep resume.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

from fakelab.errors import FakelabError
from fakelab.scale.cluster import LOCAL, cluster_cpus, ray_session

Cell = tuple[str, int]
# compute(name, level, unit) -> one record, as `CellStore.fill` takes it.
Compute = Callable[[str, int, object], dict]
# map_cells(compute, cells, units) -> ((name, level), records) as each cell finishes.
CellMap = Callable[[Compute, Sequence[Cell], Sequence], Iterator[tuple[Cell, list[dict]]]]


class CellWorker:
    """One Ray actor: holds the compute function and the units, computes whole cells."""

    def __init__(self, compute: Compute, units: Sequence):
        import torch

        # One CPU per actor: torch's own threads would only fight the other actors for it.
        torch.set_num_threads(1)
        self.compute = compute
        self.units = units

    def run(self, name: str, level: int) -> tuple[Cell, list[dict]]:
        return (name, level), [self.compute(name, level, unit) for unit in self.units]


@contextlib.contextmanager
def ray_cell_map(address: str | None = LOCAL, num_cpus: int | None = None, actors: int | None = None) -> Iterator[CellMap]:
    """A `map_cells` for `CellStore.fill` on Ray (a cluster at `address`, or a local Ray with
    `num_cpus`): one actor per CPU of the cluster (or `actors`), one cell per call."""
    with ray_session(address, num_cpus) as ray:
        from ray.util import ActorPool

        def map_cells(compute: Compute, cells: Sequence[Cell], units: Sequence) -> Iterator[tuple[Cell, list[dict]]]:
            if not cells:
                return
            worker = ray.remote(num_cpus=1)(CellWorker)
            compute_ref, units_ref = ray.put(compute), ray.put(list(units))
            count = min(len(cells), actors or cluster_cpus(ray))
            pool = ActorPool([worker.remote(compute_ref, units_ref) for _ in range(count)])
            try:
                yield from pool.map_unordered(lambda actor, cell: actor.run.remote(*cell), list(cells))
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, FakelabError):
                    raise error.cause from None  # the serial sweep's one-line message
                raise

        yield map_cells
