"""What a run reports while it trains: scalars and pictures, on disk and in TensorBoard.

Scalars always go to `RUN/log.jsonl` (one JSON object per logged step) and
pictures to `RUN/visualization/step-XXXXXXXX.png`; with the `tensorboard`
package installed, both also go to TensorBoard event files in `RUN/tensorboard/`.
A resumed run first drops what the interrupted run logged after its checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from fakelab.atomic import atomic_output
from fakelab.video import save_image

LOG_NAME = "log.jsonl"
PICTURES = "visualization"
TENSORBOARD = "tensorboard"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _records(path: Path) -> list[dict]:
    """The whole records of a log; a line cut short by a crash (or still being written) is left out."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / LOG_NAME
    return _records(path) if path.is_file() else []


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep the records up to `last_step`."""
    kept = [record for record in _records(path) if record.get("step", 0) <= last_step]
    with atomic_output(path) as tmp:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))


class RunMonitor:
    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool = True):
        self.run_dir = run_dir
        log_path = run_dir / LOG_NAME
        if log_path.exists():
            _truncate_log(log_path, start_step)
        self.log = log_path.open("a")
        self.writer = None
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events the interrupted run wrote after its checkpoint.
            self.writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=start_step or None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.log.write(json.dumps({"step": step, **values}) + "\n")
        self.log.flush()
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def picture(self, step: int, image: np.ndarray) -> Path:
        path = self.run_dir / PICTURES / f"step-{step:08d}.png"
        path.parent.mkdir(exist_ok=True)
        save_image(path, image)
        if self.writer is not None:
            self.writer.add_image("batch", image, step, dataformats="HWC")
        return path

    def close(self) -> None:
        self.log.close()
        if self.writer is not None:
            self.writer.close()
