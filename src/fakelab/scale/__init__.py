"""Scale-out of folder-sized work on Ray (the optional `scale` extra: `pip install fakelab[scale]`).

- `fakelab detect DIR --ray [ADDRESS]` (`ray_scan`): decoding and face following run as Ray
  tasks, the detector lives in actors that load it once, and every result is appended to a
  JSONL ledger as it arrives, so that an interrupted scan resumes where it stopped and a
  broken file is recorded rather than fatal.
- `fakelab dataset prepare ... --ray` (`ray_prepare`): one task per input video.

Without an address a local Ray is started on demand (few CPUs, no dashboard); with one
(`auto`, or `HOST:PORT` of a head started by `ray start --head`) the work spreads over the
cluster. See docs/scale.md.
"""

from fakelab.scale.ledger import Ledger, LedgerError

__all__ = ["Ledger", "LedgerError"]
