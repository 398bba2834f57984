"""`fakelab dataset prepare ... --ray`: one Ray task per input video."""

from __future__ import annotations

from typing import Callable, Iterator

from fakelab.errors import FakelabError
from fakelab.scale.cluster import LOCAL, ray_session


def ray_map(address: str | None = LOCAL, num_cpus: int | None = None):
    """A `map_jobs` for `prepare_dataset`: each job a Ray task (one CPU), results in input order.

    Use as a context manager: `with ray_map(address) as map_jobs: prepare_dataset(..., map_jobs=map_jobs)`."""
    import contextlib

    @contextlib.contextmanager
    def session() -> Iterator[Callable]:
        with ray_session(address, num_cpus) as ray:

            def map_jobs(function, jobs) -> Iterator:
                remote = ray.remote(num_cpus=1, max_retries=1)(function)
                refs = [remote.remote(job) for job in jobs]
                for ref in refs:  # in order: the progress bar moves as the earliest finish
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayTaskError as error:
                        if isinstance(error.cause, FakelabError):
                            raise error.cause from None  # the one-line message of the serial run
                        raise

            yield map_jobs

    return session()
