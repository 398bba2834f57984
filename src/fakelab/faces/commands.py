"""CLI commands of the face pipeline: `fakelab crop` and `fakelab demo`."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from tqdm import tqdm

from fakelab.atomic import atomic_output
from fakelab.demo import DEFAULT_OUTPUT, run_demo
from fakelab.errors import InputError
from fakelab.faces.crop import DEFAULT_MARGIN, DEFAULT_SIZE, boxes_path, crop_image, crop_video
from fakelab.faces.detect import DETECTORS


def register(subparsers) -> None:
    _register_crop(subparsers)
    _register_demo(subparsers)


def _register_crop(subparsers) -> None:
    parser = subparsers.add_parser(
        "crop",
        help="crop a video (or, with --source, an image) to a square around a face",
        description="Follow a face through VIDEO and write a square crop around it, resized to "
        "SIZE, with the same fps and audio. The box stays still while the face stays inside it. "
        "The crop boxes are written beside OUTPUT as <name>.boxes.json so the crop can be undone.",
    )
    parser.add_argument("input", metavar="VIDEO", help="video to crop (an image with --source)")
    parser.add_argument("-o", "--output", required=True, help="cropped video (.mp4/.gif) or image")
    parser.add_argument("--source", action="store_true", help="INPUT is a still image (a source)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"output side (default {DEFAULT_SIZE})")
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"room around the face on each side, in face sizes (default {DEFAULT_MARGIN})",
    )
    parser.add_argument(
        "--face", type=int, default=0, metavar="K", help="which face: 0 the most persistent (largest in an image)"
    )
    parser.add_argument("--detector", choices=DETECTORS, help="face detector (default hog; haar without dlib)")
    parser.add_argument(
        "--detect-every", type=int, default=25, metavar="N", help="full-frame detection every N frames (default 25)"
    )
    parser.set_defaults(handler=run_crop)


def run_crop(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.exists() and output.resolve() == Path(args.input).resolve():
        raise InputError(f"the output {output} is the input: give another path")
    if args.source:
        _crop_source(args, output)
        return
    result = crop_video(
        args.input,
        output,
        size=args.size,
        margin=args.margin,
        face_index=args.face,
        detector=args.detector,
        detect_every=args.detect_every,
        progress=partial(tqdm, unit="frame", desc="tracking", leave=False, disable=None),
    )
    print(result.summary())


def _crop_source(args: argparse.Namespace, output: Path) -> None:
    from fakelab.video import load_image, save_image

    image = load_image(args.input)
    crop = crop_image(image, args.size, args.margin, args.face, args.detector, where=str(args.input))
    json_path = boxes_path(output)
    with atomic_output(json_path) as json_tmp:
        save_image(output, crop.image)
        json_tmp.write_text(
            json.dumps(
                {
                    "format": "fakelab-crop-box/1",
                    "source": str(args.input),
                    "source_size": [image.shape[1], image.shape[0]],
                    "size": args.size,
                    "box": crop.box.as_list(),
                    "landmarks": crop.landmarks.tolist(),
                }
            )
        )
    print(f"wrote {output} and {json_path}")


def _register_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="animate a shipped portrait with a generated driving clip",
        description="Animate scikit-image's astronaut portrait with a talking-head clip generated "
        "from matplotlib's portrait of Grace Hopper, using the training-free portrait model (and FOMM "
        "too with --checkpoint). Runs offline on a CPU in seconds.",
    )
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help=f"output mp4 (default {DEFAULT_OUTPUT})")
    parser.add_argument("--checkpoint", help="also animate with this FOMM checkpoint")
    parser.add_argument("--config", default="vox-256", help="the checkpoint's config (default vox-256)")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> None:
    result = run_demo(args.output, args.checkpoint, args.config)
    print(f"driving clip: {result.driving}")
    for output in result.outputs:
        print(f"demo video: {output}")
