"""Connecting to a Ray cluster, or starting a small local one on demand."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from typing import Iterator

from fakelab.errors import FakelabError

LOCAL = ""  # `--ray` without an address


def require_ray():
    if importlib.util.find_spec("ray") is None:
        raise FakelabError("--ray needs Ray: pip install 'fakelab[scale]'")
    import ray

    return ray


@contextlib.contextmanager
def ray_session(address: str | None = LOCAL, num_cpus: int | None = None) -> Iterator[object]:
    """Ray, connected to `address` (`auto` or HOST:PORT) or to a local instance started here
    with `num_cpus` CPUs (default: all) and no dashboard. Reuses a session already open in
    this process (tests share one). Shut down on exit when this call started it."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise FakelabError(f"could not connect to {where}: {str(error).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
