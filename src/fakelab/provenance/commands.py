"""CLI of the provenance pillar: `fakelab provenance check FILE`, and the shared --no-provenance flag."""

from __future__ import annotations

import argparse
import json

from fakelab.cli_checks import positive_int

NO_PROVENANCE_HELP = (
    "don't watermark the frames or sign a C2PA manifest (for detector research only: a detector trained "
    "on marked fakes learns the mark; see docs/provenance.md)"
)


def add_provenance_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-provenance", action="store_true", help=NO_PROVENANCE_HELP)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "provenance",
        help="check whether a file was made by fakelab (watermark and C2PA manifest)",
        description="Read the invisible watermark fakelab puts in the frames of what it makes, and the "
        "signed C2PA manifest it embeds in the file.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="read the watermark and the C2PA manifest of a video or image",
        description="Report the watermark (payload, bits, confidence) and the C2PA manifest (valid or not, signer, "
        "claims) of FILE. Exit status 0 either way; see `made_by_fakelab` in --json.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--frames", type=positive_int, default=None, help="video frames to read the watermark from (default 24)"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> None:
    from fakelab.provenance import check_file

    report = check_file(args.file, args.frames)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.describe())


def provenance_report(path):
    """For `fakelab detect`: the provenance of `path`, or None when it cannot be read."""
    from fakelab.errors import InputError
    from fakelab.provenance import check_file

    try:
        return check_file(path)
    except InputError:
        return None


# How a folder scan says, beside a file's score, that provenance marks the file as fakelab's.
MADE_BY_FAKELAB = "MADE BY FAKELAB (provenance), whatever the score says"


def provenance_fields(report) -> dict:
    """The fields a folder scan adds to each file's JSON entry (serial or on Ray), from
    `provenance_report`'s answer (None: not readable)."""
    return {
        "provenance": report.to_json() if report is not None else None,
        "made_by_fakelab": bool(report is not None and report.made_by_fakelab),
    }
