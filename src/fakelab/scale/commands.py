"""The `--ray` options of `fakelab detect` and `fakelab dataset prepare` (the commands
themselves stay in their pillars; they hand over here when `--ray` is given)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from fakelab.cli_checks import positive_int
from fakelab.errors import InputError
from fakelab.provenance.commands import MADE_BY_FAKELAB


def add_ray_arguments(parser: argparse.ArgumentParser, how: str = "") -> None:
    group = parser.add_argument_group("scale-out on Ray (pip install 'fakelab[scale]'; see docs/scale.md)")
    group.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS",
        help="spread the work over Ray: a cluster's ADDRESS (HOST:PORT or auto), or a local Ray started "
        "for this run when no address is given" + (f"; {how}" if how else ""),
    )
    group.add_argument("--ray-cpus", type=positive_int, metavar="N", help="CPUs of the local Ray (default: all)")


def add_ledger_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger", metavar="JSONL",
        help="with --ray: the results file, one JSON line per file, appended as results arrive; "
        "a scan run again with the same ledger skips the files it holds (default: fakelab-detect-DIR.jsonl)",
    )
    parser.add_argument("--ray-actors", type=positive_int, metavar="N", help="with --ray: detector actors (default: CPUs / 4, at least 1)")
    parser.add_argument("--restart", action="store_true", help="with --ray: start the ledger afresh instead of resuming")


def default_ledger(folder: Path) -> Path:
    return Path(f"fakelab-detect-{folder.resolve().name or 'root'}.jsonl")


def run_ray_detect(args: argparse.Namespace, folder: Path, checkpoint) -> None:
    """`fakelab detect DIR --ray`: print each file's outcome as it arrives, JSON at the end."""
    from fakelab.detection.pipeline import media_files
    from fakelab.scale.detect import ray_scan

    if args.report:
        raise InputError("--report needs the crops of every file: run it without --ray (or on the ledger's suspects)")
    if not folder.is_dir():
        raise InputError(f"--ray scans folders: {folder} is a file (run without --ray)")
    paths = media_files(folder)
    ledger = Path(args.ledger) if args.ledger else default_ledger(folder)
    bar = tqdm(total=len(paths), desc="detect (ray)", unit="file", disable=None)

    def on_entry(entry: dict) -> None:
        bar.update()
        if "error" in entry:
            bar.write(f"skipped {entry['file']}: {entry['error']}", file=sys.stderr)
        elif not args.json:
            bar.write(_summary(entry))

    result = ray_scan(
        checkpoint, paths, ledger, address=args.ray, num_cpus=args.ray_cpus, frames=args.frames,
        threshold=args.threshold, face_detector=args.face_detector, arch=args.arch, device=args.device,
        actors=args.ray_actors, backend=args.backend, restart=args.restart, on_entry=on_entry,
    )
    bar.close()
    if result.resumed:
        print(f"resumed: {result.resumed} file(s) were already in {ledger}", file=sys.stderr)
    if not result.results:
        raise InputError(f"none of the {len(paths)} files in {folder} could be scored (see {ledger})")
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "threshold": args.threshold, **result.to_json()}, indent=2))
    else:
        fakes = sum(entry["verdict"] == "fake" for entry in result.results)
        print(f"{len(result.results)} scored ({fakes} fake), {len(result.failures)} failed; results in {ledger}")


def _summary(entry: dict) -> str:
    line = f"{entry['file']}: {entry['verdict'].upper()} (score {entry['score']:.3f}, {entry['frames_scored']} frames)"
    if entry.get("made_by_fakelab"):
        line += "; " + MADE_BY_FAKELAB
    return line
