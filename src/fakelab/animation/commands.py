"""CLI commands of the animation pillar: `fakelab animate` and `fakelab convert`."""

from __future__ import annotations

import argparse

from fakelab.animation.api import MODELS, animate
from fakelab.animation.checkpoint import convert_checkpoint
from fakelab.animation.config import bundled_config_names
from fakelab.cli_checks import check_paths, check_suffix, config_file, device, non_negative_int, positive_int
from fakelab.provenance.commands import add_provenance_argument
from fakelab.animation.render import BACKENDS, PRECISIONS


def register(subparsers) -> None:
    _register_animate(subparsers)
    _register_convert(subparsers)


def _register_animate(subparsers) -> None:
    parser = subparsers.add_parser(
        "animate",
        help="animate a still image with the motion of a driving video",
        description="Animate SOURCE (an image) with the motion of DRIVING (a video) using the training-free "
        "portrait model (the default: no weights needed), a First Order Motion Model checkpoint, or the "
        "classical landmark-warp baseline. Writes an mp4 "
        "(H.264 + AAC) or a gif at the driving fps.",
    )
    parser.add_argument("source", help="source image (any format and mode Pillow reads)")
    parser.add_argument("driving", help="driving video")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4 or .gif)")
    parser.add_argument(
        "--model",
        choices=MODELS,
        help="portrait (default without --checkpoint: training-free, native resolution, face cut out and pasted "
        "back), fomm (default with --checkpoint), landmark-warp (the classical baseline) or landmarks2face "
        "(a person-specific pix2pix generator given as --checkpoint)",
    )
    parser.add_argument(
        "--checkpoint", help="FOMM checkpoint (.pth.tar or .safetensors), or latest_net_G.pth for landmarks2face"
    )
    parser.add_argument(
        "--config",
        default="vox-256",
        help=f"config name ({', '.join(bundled_config_names())}) or a YAML path (default: vox-256)",
    )
    parser.add_argument("--absolute", action="store_true", help="use absolute keypoint positions, not relative motion")
    parser.add_argument(
        "--no-adapt-scale", action="store_true", help="don't scale motion by the source/driving keypoint hull sizes"
    )
    parser.add_argument(
        "--best-frame", type=non_negative_int, metavar="N", help="take motion relative to driving frame N (animate both ways from it)"
    )
    parser.add_argument(
        "--find-best-frame",
        action="store_true",
        help="start from the driving frame whose face pose is closest to the source's",
    )
    parser.add_argument(
        "--crop", choices=("none", "auto"), default="none",
        help="fomm and landmark-warp: auto cuts the source and every driving frame to the face first "
        "(recommended for faces); the portrait model always works on the face region",
    )
    parser.add_argument(
        "--paste-back", action="store_true",
        help="fomm and landmark-warp: composite the animated face into the full-size source, so the output "
        "has the source's size (the portrait model always does)",
    )
    parser.add_argument(
        "--audio",
        default="keep",
        metavar="keep|none|FILE",
        help="keep the driving video's audio (default), drop it, or dub the audio of FILE",
    )
    parser.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, help="driving frames per batch (default: calibrated; see docs/speed.md)")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", *BACKENDS),
        help="how the FOMM render runs: auto (default) = the fastest this machine's calibration found at equal "
        "output (measured once, cached); or torch, onnxruntime, openvino",
    )
    parser.add_argument("--threads", type=positive_int, help="CPU threads of the render (default: calibrated)")
    parser.add_argument(
        "--precision", choices=PRECISIONS,
        help="fp32 (default); bf16 (CPU/GPU) or fp16 (GPU): faster, not faithful (the calibration prints the error)",
    )
    add_provenance_argument(parser)
    parser.set_defaults(handler=run_animate)


def run_animate(args: argparse.Namespace) -> None:
    audio_file = None if args.audio in ("keep", "none") else args.audio
    check_paths(inputs={"source": args.source, "driving video": args.driving, "checkpoint": args.checkpoint,
                "config": config_file(args.config), "audio file": audio_file}, outputs=[args.output])
    check_suffix(args.output, (".mp4", ".mov", ".mkv", ".gif"))
    result = animate(
        args.source,
        args.driving,
        args.output,
        model=args.model,
        checkpoint=args.checkpoint,
        config=args.config,
        relative=not args.absolute,
        adapt_scale=not args.no_adapt_scale,
        best_frame=args.best_frame,
        find_best_frame=args.find_best_frame,
        crop=args.crop == "auto",
        paste_back=args.paste_back,
        audio=args.audio,
        device=args.device,
        batch_size=args.batch_size,
        backend=args.backend,
        threads=args.threads,
        precision=args.precision,
        progress=True,
        provenance=not args.no_provenance,
    )
    print(result.summary())


def _register_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a FOMM checkpoint between .pth.tar and .safetensors",
        description="Rewrite a FOMM checkpoint in the format given by OUTPUT's suffix. "
        "The input is read as data only (never unpickled as code).",
    )
    parser.add_argument("input", help="checkpoint to read (.pth.tar or .safetensors)")
    parser.add_argument("output", help="checkpoint to write (.safetensors, or .pth.tar)")
    parser.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> None:
    check_paths(inputs={"checkpoint": args.input}, outputs=[args.output])
    checkpoint = convert_checkpoint(args.input, args.output)
    tensors = sum(len(state) for state in checkpoint.states.values())
    print(f"wrote {args.output}: {', '.join(checkpoint.states)} ({tensors} tensors, epoch {checkpoint.epoch})")
