"""`fakelab evaluate KIND ...`: one command, with a subcommand per kind of evaluation.

Several pillars evaluate something (animation models, detectors), so none of them owns
the `evaluate` parser: this module does, and each pillar listed in EVALUATION_MODULES
adds its kinds with a `register_evaluation(kinds)` function, where `kinds` is the
subparsers object of `evaluate` (call `kinds.add_parser("detection", ...)` and set a
handler with `set_defaults(handler=...)`, as for any other command).
"""

from __future__ import annotations

import importlib

EVALUATION_MODULES = [
    "fakelab.metrics.commands",
    "fakelab.detection.commands",
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model: see `fakelab evaluate KIND --help`",
        description="Evaluate a model on a dataset; each KIND has its own options.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for module_name in EVALUATION_MODULES:
        importlib.import_module(module_name).register_evaluation(kinds)
