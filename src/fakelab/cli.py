"""The `fakelab` command: a thin layer over the Python API.

Each pillar registers its subcommands from its own `commands` module, so this
file only wires them together and turns user errors into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fakelab.errors import FakelabError

COMMAND_MODULES = [
    "fakelab.animation.commands",
    "fakelab.datasets.commands",
    "fakelab.training.commands",
    "fakelab.faces.commands",
    "fakelab.detection.commands",
    "fakelab.evaluate_commands",
    "fakelab.attacks.commands",
    "fakelab.provenance.commands",
    "fakelab.webapp.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakelab", description="Make, detect and stress-test image-animation deepfakes."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except FakelabError as error:
        print(f"fakelab {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fakelab {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
