"""Person-specific landmarks-to-face pix2pix on CPU: train, score held-out frames, drive with another video.

    PYTHONPATH=src nice -n 10 .venv/bin/python bench/pix2pix_reenactment.py train    # ~35 min on 1 thread
    PYTHONPATH=src .venv/bin/python bench/pix2pix_reenactment.py report               # metrics, grid, contact sheet

`train` makes landmark-sketch pairs from every 3rd frame of ../shared/media/d11.mp4
(the last 10% of the video held out) and trains unet_128 (ngf = ndf = 32,
instance norm) for 50 epochs (25 constant, 25 decaying), keeping the generator
after epochs 1, 10, 20, 30, 40, 50. It can be stopped and started again: it resumes.
`report` prints held-out L1 / PSNR / SSIM of each kept generator, draws the
epoch grid (docs/pix2pix-epochs.png) and drives the person with d12.mp4
(docs/pix2pix-reenactment.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
PERSON_VIDEO = MEDIA / "d11.mp4"
DRIVING_VIDEO = MEDIA / "d12.mp4"
EPOCHS = (1, 10, 20, 30, 40, 50)
OPTIONS = dict(generator="unet_128", ngf=32, ndf=32, norm="instance", n_epochs=25, n_epochs_decay=25, seed=0)


def stage_train(work: Path) -> None:
    from fakelab.pix2pix.pairs import make_pairs
    from fakelab.pix2pix.train import STATE_NAME, Pix2PixOptions, RunOptions, train

    pairs = work / "pairs"
    if not pairs.exists():
        print(make_pairs([PERSON_VIDEO], pairs, "landmarks", size=128, test_fraction=0.1, every=3).summary())
    run = work / "run"
    result = train(
        pairs,
        run,
        Pix2PixOptions(**OPTIONS),
        RunOptions(save_epoch_freq=0, save_epochs=EPOCHS, checkpoint_every=200, progress=sys.stderr.isatty()),
        resume=(run / STATE_NAME).exists(),
    )
    print(f"stopped at epoch {result.epoch}, step {result.step}; held-out {result.held_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "report"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/fakelab-pix2pix-bench"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "train":
        stage_train(args.work)
    else:
        stage_report(args.work)


if __name__ == "__main__":
    main()
