"""The `fakelab` command: a thin layer over the Python API.

Each pillar registers its subcommands from its own `commands` module, so this
file only wires them together and turns user errors into one-line messages.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from fakelab.atomic import all_or_nothing
from fakelab.cli_checks import describe_os_error, interrupt_exit_code, termination_received, termination_signals
from fakelab.errors import FakelabError

COMMAND_MODULES = [
    "fakelab.animation.commands",
    "fakelab.datasets.commands",
    "fakelab.training.commands",
    "fakelab.faces.commands",
    "fakelab.detection.commands",
    "fakelab.evaluate_commands",
    "fakelab.attacks.commands",
    "fakelab.stress.commands",
    "fakelab.live.commands",
    "fakelab.pix2pix.commands",
    "fakelab.provenance.commands",
    "fakelab.webapp.commands",
]


# Set FAKELAB_DEBUG=1 to get the traceback of an unexpected error instead of its one-line summary.
DEBUG_VARIABLE = "FAKELAB_DEBUG"
INTERNAL_ERROR_EXIT_CODE = 70  # EX_SOFTWARE


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line that names the option, and where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fakelab", description="Make, detect and stress-test image-animation deepfakes."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _one_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "worker" in lines[0]:
        # A DataLoader worker's error comes back with its whole traceback: keep its message.
        return lines[-1].split(": ", 1)[-1]
    return lines[0] if lines else ""


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # usage errors and --help
        return exit_request.code if isinstance(exit_request.code, int) else 2
    name = " ".join(filter(None, [args.command, getattr(args, "action", None), getattr(args, "kind", None)]))

    def fail(message: str, code: int = 1) -> int:
        stop = termination_received()
        if stop is not None:  # the error is what the stop turned into on its way up
            return stopped(stop)
        print(f"fakelab {name}: error: {_one_line(message)}", file=sys.stderr)
        return code

    def stopped(interrupt: KeyboardInterrupt) -> int:
        what = f"stopped by {interrupt.args[0]}" if interrupt.args else "interrupted"
        print(f"fakelab {name}: {what}; unfinished outputs were removed", file=sys.stderr)
        return interrupt_exit_code(interrupt)

    try:
        with termination_signals(), all_or_nothing(enabled=not getattr(args, "keeps_finished_outputs", False)):
            args.handler(args)
    except FakelabError as error:
        return fail(str(error))
    except KeyboardInterrupt as interrupt:
        return stopped(interrupt)
    except BrokenPipeError:
        # The reader of our output went away (`fakelab detect --json | head`): nothing to report,
        # and the interpreter's final flush of stdout must not fail either.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MemoryError:
        return fail("out of memory: the input is too large for this machine")
    except OSError as error:
        return fail(describe_os_error(error))
    except RecursionError:
        return fail("the input is nested too deeply to be read")
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        stop = termination_received()
        if stop is not None:
            return stopped(stop)
        if os.environ.get(DEBUG_VARIABLE):
            raise
        return fail(
            f"internal error ({type(error).__name__}: {_one_line(error)}); "
            f"rerun with {DEBUG_VARIABLE}=1 for the traceback and report it",
            INTERNAL_ERROR_EXIT_CODE,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
