"""Training steps per second of one FOMM config (the full objective, one optimiser step each).

Random frames stand in for a dataset, so the number measures the model and its
losses, not data loading. On a GPU, `--precision auto` trains with fp16 autocast.

    python bench/train_speed.py [--config vox-256] [--batch-size 4] [--steps 5] [--device cuda]

Prints one line of JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from fakelab.animation.config import load_config
from fakelab.training.params import train_params
from fakelab.training.trainer import PRECISIONS, FommTrainer, autocast_dtype


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vox-256", help="bundled config name or YAML path")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--perceptual-weights", help="VGG19 weights; default: EfficientNet-Lite0")
    parser.add_argument("--threads", type=int, help="CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_config(args.config)
    params = train_params(config)
    if args.batch_size:
        params = dataclasses.replace(params, batch_size=args.batch_size)
    device = torch.device(args.device)
    trainer = FommTrainer(config, params, device, args.perceptual_weights, args.precision)
    height, width = config.frame_shape[:2]
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(params.batch_size, 3, height, width, generator=generator).to(device)
    driving = torch.rand(params.batch_size, 3, height, width, generator=generator).to(device)

    for step in range(args.warmup):
        trainer.train_step(source, driving, step)
    synchronize(device)
    started = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        trainer.train_step(source, driving, step)
    synchronize(device)
    seconds = time.perf_counter() - started
    dtype = autocast_dtype(args.precision, device)
    print(
        json.dumps(
            {
                "config": config.name,
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
                "batch_size": params.batch_size,
                "frame_size": [width, height],
                "perceptual": trainer.perceptual_name,
                "adversarial": params.loss_weights.adversarial,
                "steps": args.steps,
                "steps_per_second": round(args.steps / seconds, 4),
                "frames_per_second": round(args.steps * params.batch_size / seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
