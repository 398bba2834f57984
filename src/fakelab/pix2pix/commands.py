"""CLI commands of the pix2pix pillar: `fakelab pix2pix pairs|train|predict`."""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from fakelab.cli_checks import integer, non_negative_int, positive_int
from fakelab.pix2pix.data import default_load_size
from fakelab.pix2pix.networks import GENERATORS, NORMS
from fakelab.pix2pix.pairs import KINDS
from fakelab.training.commands import stopped_exit_code


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pix2pix",
        help="pix2pix image-to-image translation: make pairs, train, predict",
        description="Conditional GAN image-to-image translation (Isola et al. 2017), compatible with the "
        "pytorch-CycleGAN-and-pix2pix release's latest_net_G.pth / latest_net_D.pth files.",
    )
    commands = parser.add_subparsers(dest="pix2pix_command", required=True, metavar="COMMAND")
    _register_pairs(commands)
    _register_train(commands)
    _register_predict(commands)


def _bar(items, name: str, total: int | None):
    return tqdm(items, total=total, desc=name, unit="frame", file=sys.stderr)


def _register_pairs(commands) -> None:
    parser = commands.add_parser(
        "pairs",
        help="make A|B training pairs from videos: a sketch of the face against the face crop",
        description="Follow the main face of each video, crop it (as `fakelab crop` does) and write each frame "
        "as an aligned pair: A = a sketch (the 68 landmarks as coloured polylines, or Canny edges of the crop), "
        "B = the crop. The last --test-fraction of each video goes to DIR/test, the rest to DIR/train.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="new folder for the pairs")
    parser.add_argument("--kind", choices=KINDS, default="landmarks", help="what A shows (default: landmarks)")
    parser.add_argument(
        "--size", type=integer(16), default=256, help="side of the crops in pixels (default 256; 128 for unet_128)"
    )
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of each video's last frames held out (default 0.1)")
    parser.add_argument("--every", type=positive_int, default=1, metavar="N", help="keep every Nth frame (default 1)")
    parser.set_defaults(handler=run_pairs)


def run_pairs(args: argparse.Namespace) -> None:
    from fakelab.pix2pix.pairs import make_pairs

    result = make_pairs(args.videos, args.output, args.kind, args.size, args.test_fraction, args.every, progress=_bar)
    print(result.summary())


def _register_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train a pix2pix generator and discriminator on paired images",
        description="Train pix2pix on DIR (aligned A|B images in train/ [test/], or A/ and B/ folders with "
        "matching names): GAN (vanilla) + 100 x L1, Adam 2e-4 beta1 0.5, constant then linearly decaying learning "
        "rate. RUN gets latest_net_G.pth / latest_net_D.pth (the reference's layout), latest_state.pth for "
        "--resume, log.jsonl, tensorboard/ and web/index.html with sample results per epoch. Ctrl-C stops after "
        "the current step and writes a checkpoint.",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of paired images")
    parser.add_argument("-o", "--output", required=True, metavar="RUN", help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN (its options are read back)")
    parser.add_argument("--netG", dest="generator", choices=tuple(GENERATORS), default="unet_256", help="generator (default unet_256)")
    parser.add_argument("--ngf", type=int, default=64, help="generator width (default 64)")
    parser.add_argument("--ndf", type=int, default=64, help="discriminator width (default 64)")
    parser.add_argument("--norm", choices=NORMS, default="batch", help="normalisation (default batch)")
    parser.add_argument("--no-dropout", action="store_true", help="no dropout in the generator")
    parser.add_argument("--n-epochs", type=int, default=100, help="epochs at the initial learning rate (default 100)")
    parser.add_argument("--n-epochs-decay", type=int, default=100, help="epochs of linear decay to zero (default 100)")
    parser.add_argument("--epochs", type=positive_int, help="stop after this epoch this time (resume later for the rest)")
    parser.add_argument("--batch-size", type=int, default=1, help="default 1")
    parser.add_argument("--lr", type=float, default=2e-4, help="initial learning rate (default 2e-4)")
    parser.add_argument("--lambda-l1", type=float, default=100.0, help="weight of the L1 loss (default 100)")
    parser.add_argument(
        "--load-size", type=int, help=f"resize before the random crop (default {default_load_size(256)} for unet_256, "
        f"{default_load_size(128)} for unet_128)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=positive_int, default=500, metavar="STEPS", help="also at every epoch's end (default 500)")
    parser.add_argument("--save-epoch-freq", type=non_negative_int, default=5, metavar="N", help="keep epoch_<N>_net_G.pth every N epochs (0: never)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto: fp16 autocast on GPU")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.set_defaults(handler=run_train, keeps_finished_outputs=True)  # checkpoints, to resume from


def run_train(args: argparse.Namespace) -> None:
    from fakelab.pix2pix.train import Pix2PixOptions, RunOptions, train

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = Pix2PixOptions(
        generator=args.generator, ngf=args.ngf, ndf=args.ndf, norm=args.norm, dropout=not args.no_dropout,
        n_epochs=args.n_epochs, n_epochs_decay=args.n_epochs_decay, batch_size=args.batch_size, lr=args.lr,
        lambda_l1=args.lambda_l1, load_size=args.load_size, seed=args.seed,
    )
    run = RunOptions(
        epochs=args.epochs, checkpoint_every=args.checkpoint_every, save_epoch_freq=args.save_epoch_freq,
        device=args.device, precision=args.precision, tensorboard=not args.no_tensorboard,
    )
    result = train(args.data, args.output, options, run, resume=args.resume)
    held_out = ", ".join(f"{name} {value:.4g}" for name, value in result.held_out.items())
    if result.stopped_early:
        print(f"stopped at step {result.step} (epoch {result.epoch}); continue with --resume", file=sys.stderr)
        raise SystemExit(stopped_exit_code(result.signal))
    print(f"trained to step {result.step} (epoch {result.epoch}){'; held-out ' + held_out if held_out else ''} -> {result.run_dir}")


def _register_predict(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="translate images, folders and videos with a trained generator",
        description="Run a generator (latest_net_G.pth from fakelab or from the reference release) in eval mode "
        "on each input: images, folders of images, videos (frame by frame, audio kept). Outputs are at the "
        "model's size. One input and an OUT with a suffix: OUT is the file; otherwise OUT is a folder.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IN")
    parser.add_argument("--checkpoint", required=True, metavar="G", help="generator state_dict (latest_net_G.pth)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT")
    parser.add_argument("--aligned", action="store_true", help="inputs are A|B pairs: translate the left half")
    parser.add_argument("--no-audio", action="store_true", help="drop the videos' audio")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    from fakelab.pix2pix.predict import predict

    result = predict(args.inputs, args.output, args.checkpoint, args.device, args.aligned, not args.no_audio, progress=_bar)
    print(result.summary())
