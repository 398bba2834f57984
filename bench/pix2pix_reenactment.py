"""Person-specific landmarks-to-face pix2pix on CPU: train, score held-out frames, drive with another video.

    PYTHONPATH=src nice -n 10 .venv/bin/python bench/pix2pix_reenactment.py train    # 0.6-2.3 s a step on 1 thread
    PYTHONPATH=src .venv/bin/python bench/pix2pix_reenactment.py report               # metrics, grid, contact sheet

`train` makes landmark-sketch pairs from every 3rd frame of ../shared/media/d11.mp4
(the last 10% of the video held out) and trains unet_128 (ngf = ndf = 32,
instance norm) for 50 epochs (25 constant, 25 decaying), keeping the generator
after epochs 1, 10, 20, 30, 40, 50. It can be stopped (Ctrl-C, SIGTERM) and started again: it
resumes. The documented run was stopped after epoch 30, at 45 minutes (docs/pix2pix.md).
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


def stage_train(work: Path, stop_after: int | None) -> None:
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
        RunOptions(
            epochs=stop_after, save_epoch_freq=0, save_epochs=EPOCHS, checkpoint_every=200, progress=sys.stderr.isatty()
        ),
        resume=(run / STATE_NAME).exists(),
    )
    print(f"stopped at epoch {result.epoch}, step {result.step}; held-out {result.held_out}")


def kept_generators(run: Path) -> list[tuple[int, Path]]:
    """(epoch, file) of the kept generators, and of the latest one when it is further on."""
    from fakelab.pix2pix.train import GENERATOR_NAME, STATE_NAME

    kept = sorted((int(path.name.split("_")[1]), path) for path in run.glob("epoch_*_net_G.pth"))
    steps_per_epoch = len(list((run.parent / "pairs" / "train").iterdir()))
    latest_epoch = int(torch.load(run / STATE_NAME, weights_only=True)["step"]) / steps_per_epoch
    if not kept or int(latest_epoch) > kept[-1][0]:
        kept.append((latest_epoch, run / GENERATOR_NAME))
    return kept


def score(make, pairs) -> dict[str, float]:
    """Mean L1 (of [0, 1] pixels), PSNR, SSIM of make(sketch, real) against real over the pairs."""
    import numpy as np

    from fakelab.attacks.quality import psnr, ssim

    values = {"L1": [], "PSNR": [], "SSIM": []}
    for index in range(len(pairs)):
        sketch, real = pairs.images(index)
        fake = make(sketch, real)
        values["L1"].append(np.abs(fake.astype(float) - real.astype(float)).mean() / 255)
        values["PSNR"].append(psnr(real, fake))
        values["SSIM"].append(ssim(real, fake))
    return {name: float(np.mean(v)) for name, v in values.items()}


def label(image, text: str):
    import cv2

    out = image.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def stage_report(work: Path) -> None:
    import time

    import numpy as np

    from fakelab.animation.api import DrivingVideo, animate_frames, build_animator
    from fakelab.faces import crop_image, largest_face
    from fakelab.pix2pix.data import PairedImages
    from fakelab.pix2pix.predict import Translator
    from fakelab.video import VideoWriter, iter_frames, save_image

    run = work / "run"
    test = PairedImages(work / "pairs", "test", 128)
    kept = kept_generators(run)
    print(f"held-out: {len(test)} pairs (the last 10% of {PERSON_VIDEO.name}, every 3rd frame), eval mode")
    print(f"{'epoch':>6} {'L1':>7} {'PSNR':>7} {'SSIM':>6}")
    translators = {}
    for epoch, path in kept:
        translators[epoch] = Translator.load(path)
        scores = score(lambda sketch, _real, t=translators[epoch]: t(sketch), test)
        print(f"{epoch:>6.4g} {scores['L1']:>7.4f} {scores['PSNR']:>7.2f} {scores['SSIM']:>6.3f}")

    # Baseline: the training-free landmark-warp model, warping the first training frame so that its
    # landmarks land on each held-out frame's (detected on the real frame: an oracle for it).
    from fakelab.animation.landmark_warp import LandmarkWarper

    first_sketch, first_real = PairedImages(work / "pairs", "train", 128).images(0)
    warper = LandmarkWarper(first_real, largest_face(first_real, "the first training frame"))
    baseline = score(lambda _sketch, real: warper(largest_face(real, "a held-out frame")), test)
    print(f"{'warp':>6} {baseline['L1']:>7.4f} {baseline['PSNR']:>7.2f} {baseline['SSIM']:>6.3f}"
          "   (landmark-warp of the first training frame onto each held-out frame's landmarks)")

    # Epoch grid: held-out sketch | each kept epoch | the real frame.
    shown = kept
    rows = []
    for index in np.linspace(0, len(test) - 1, 2).round().astype(int):  # two rows keep the PNG under 400 KB
        sketch, real = test.images(int(index))
        cells = [label(sketch, "sketch (held out)")]
        cells += [label(translators[epoch](sketch), f"epoch {epoch:.4g}") for epoch, _ in shown]
        rows.append(np.concatenate(cells + [label(real, "real")], axis=1))
    save_image(REPO / "docs" / "pix2pix-epochs.png", np.concatenate(rows, axis=0))

    # Reenactment: the person (a frame of the training video, cut as the pairs were) driven by another video.
    latest = kept[-1][1]
    animator = build_animator("landmarks2face", latest)
    person = crop_image(next(iter_frames(PERSON_VIDEO)), size=128).image
    driving = DrivingVideo(DRIVING_VIDEO, animator.size, None, crop=True)
    started = time.perf_counter()
    frames = list(animate_frames(animator, person, driving))
    seconds = time.perf_counter() - started
    print(f"reenactment: {len(frames)} frames of {DRIVING_VIDEO.name} in {seconds:.1f} s "
          f"({len(frames) / seconds:.1f} fps including face tracking, 1 thread, loaded machine)")
    with VideoWriter(work / "reenactment.mp4", driving.fps, audio=DRIVING_VIDEO) as writer:
        for frame in frames:
            writer.write(frame)
    driving_frames = list(driving.frames())
    sketches = [
        np.zeros_like(person) if sketch is None else sketch
        for sketch in animator.sketches(largest_face(person, "the person"), driving_frames)
    ]
    picks = np.linspace(0, len(frames) - 1, 7).round().astype(int)
    sheet = [
        np.concatenate([label(person, "person")] + [label(driving_frames[i], f"driving {i}") for i in picks], axis=1),
        np.concatenate([label(np.zeros_like(person), "sketch")] + [sketches[i] for i in picks], axis=1),
        np.concatenate([label(person, "output")] + [frames[i] for i in picks], axis=1),
    ]
    save_image(REPO / "docs" / "pix2pix-reenactment.png", np.concatenate(sheet, axis=0))
    print(f"wrote docs/pix2pix-epochs.png, docs/pix2pix-reenactment.png and {work / 'reenactment.mp4'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "report"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/fakelab-pix2pix-bench"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stop-after-epoch", type=int, help="train up to this epoch this time (the documented run: 30)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "train":
        stage_train(args.work, args.stop_after_epoch)
    else:
        stage_report(args.work)


if __name__ == "__main__":
    main()
