"""`fakelab train`: train or fine-tune a First Order Motion Model."""

from __future__ import annotations

import argparse
import sys

import torch

from fakelab.animation.config import bundled_config_names
from fakelab.cli_checks import check_paths, config_file, device_or_auto, integer, positive_int, seed
from fakelab.training.trainer import CHECKPOINT_NAME, CONFIG_NAME, PRECISIONS, TrainOptions, train

INTERRUPTED_EXIT_CODE = 130


def stopped_exit_code(signal_number: int | None) -> int:
    """Exit status of a training run stopped early: 128 + the signal that stopped it, as a shell
    reports a process that signal ended (130 when none is known)."""
    return 128 + signal_number if signal_number else INTERRUPTED_EXIT_CODE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a First Order Motion Model on a dataset of videos",
        description=(
            "Train FOMM (keypoint detector, generator and, for -adv configs, discriminator) on DATA, a dataset "
            "folder with train/ and test/ videos (see `fakelab dataset prepare`). The run folder gets "
            f"{CONFIG_NAME}, {CHECKPOINT_NAME} (reference layout, loads in `fakelab animate`), log.jsonl, "
            "visualization/ and, with tensorboard installed, tensorboard/. Ctrl-C stops after the current step "
            "and writes a checkpoint; --resume continues exactly where the checkpoint left off. For several "
            "GPUs: torchrun --nproc_per_node=N -m fakelab train ..."
        ),
    )
    parser.add_argument("--data", required=True, help="dataset folder (train/ and test/ video folders, strips or videos)")
    parser.add_argument("-o", "--output", required=True, help="run folder")
    parser.add_argument(
        "--config",
        help=f"config name ({', '.join(bundled_config_names())}) or YAML path; with --resume, default: the run's",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in the output folder from its checkpoint")
    parser.add_argument("--steps", type=positive_int, help="train until this step (default: the config's num_epochs)")
    parser.add_argument("--batch-size", type=positive_int, help="global batch size (default: the config's)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=1000, metavar="N", help="steps between checkpoints (default: 1000)")
    parser.add_argument("--log-every", type=positive_int, default=10, metavar="N", help="steps between logged losses (default: 10)")
    parser.add_argument("--image-every", type=positive_int, default=500, metavar="N", help="steps between pictures (default: 500)")
    parser.add_argument(
        "--perceptual-weights",
        metavar="VGG19_FILE",
        help="ImageNet VGG19 weights (torchvision layout) for the perceptual loss, as in the paper; "
        "default: the packaged EfficientNet-Lite0",
    )
    parser.add_argument("--init", metavar="CHECKPOINT", help="start from these weights (e.g. an official checkpoint)")
    parser.add_argument("--device", type=device_or_auto, default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="auto: fp16 mixed precision on GPU, fp32 on CPU"
    )
    parser.add_argument("--workers", type=integer(0, 64), default=2, help="data-loading processes (default: 2)")
    parser.add_argument(
        "--threads", type=integer(1, 1024), help="CPU threads per process (default: PyTorch's; 1 is fastest on a busy machine)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of initialisation, sampling and warps (default: 0)")
    parser.add_argument("--no-tensorboard", action="store_true", help="don't write TensorBoard events")
    parser.set_defaults(handler=run_train, keeps_finished_outputs=True)  # checkpoints, to resume from


def run_train(args: argparse.Namespace) -> None:
    check_paths(
        inputs={"config": config_file(args.config), "perceptual weights": args.perceptual_weights, "checkpoint": args.init},
        input_dirs={"data folder": args.data},
        output_dirs=[args.output],
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    options = TrainOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        image_every=args.image_every,
        workers=args.workers,
        device=args.device,
        precision=args.precision,
        perceptual_weights=args.perceptual_weights,
        init_checkpoint=args.init,
        seed=args.seed,
        tensorboard=not args.no_tensorboard,
    )
    result = train(args.data, args.output, args.config, options, resume=args.resume)
    if result.stopped_early:
        print(
            f"stopped at step {result.step} of {result.total_steps}; checkpoint {result.checkpoint}; "
            f"continue with --resume",
            file=sys.stderr,
        )
        raise SystemExit(stopped_exit_code(result.signal))
    print(f"trained to step {result.step}; checkpoint {result.checkpoint}")
