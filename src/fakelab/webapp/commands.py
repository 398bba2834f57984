"""CLI of the web app: `fakelab serve`."""

from __future__ import annotations

import argparse
import os
import sys

from fakelab.cli_checks import integer, positive_number
from fakelab.errors import InputError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="open the local web app (animate, detect, attack, stress, live) in a browser",
        description="Serve fakelab's web app at http://HOST:PORT. It binds to this machine only by default; "
        "nothing is fetched from the internet and no analytics are sent.",
    )
    parser.add_argument("--port", type=integer(1, 65535), default=7860, help="port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument(
        "--max-upload-mb", type=positive_number, default=200, help="largest upload accepted, in MB (default 200)"
    )
    parser.add_argument("--workdir", help="folder for uploads and results (default: a new temporary folder)")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from fakelab.webapp.server import create_app

    if args.host not in LOCAL_HOSTS:
        print(f"warning: serving on {args.host}: anyone who can reach this machine can use the app and read "
              "its uploads and results; there is no login", file=sys.stderr)
    app = create_app(args.workdir, args.max_upload_mb)
    print(f"fakelab web app: http://{'localhost' if args.host in LOCAL_HOSTS else args.host}:{args.port}  "
          f"(results in {app.state.workdir}; Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as error:
        raise InputError(f"cannot serve on {args.host}:{args.port}: {error.strerror or error}") from None
