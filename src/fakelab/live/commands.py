"""CLI of the live pillar: `fakelab live`."""

from __future__ import annotations

import argparse
import sys

from fakelab.live.avatars import LIVE_MODELS
from fakelab.provenance.commands import add_provenance_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "live",
        help="a live avatar: a webcam, a video or a stream drives still portraits in real time",
        description="Animate avatar images with the face seen by a webcam, a video file (played at its own "
        "frame rate, looped) or a stream, in real time. Outputs: a preview page in the browser (MJPEG on "
        "127.0.0.1), a virtual camera for video calls, and recordings. Keys (in the terminal or on the "
        "page): r recalibrate, n/p next/previous avatar, o driving-face overlay, m mirror, f fps/latency, q quit. "
        "With --serve PORT it is instead a worker that renders for `fakelab live --remote` clients.",
    )
    parser.add_argument("--source", action="append", default=[], metavar="IMAGE",
                        help="avatar image or folder of images (repeat for more avatars)")
    parser.add_argument("--input", default="0", metavar="0|/dev/videoN|FILE|URL",
                        help="webcam number or device, video file (looped), or stream URL (default: 0)")
    parser.add_argument("--output", action="append", metavar="preview|virtualcam|FILE",
                        help="where frames go (repeat for several; default: preview); a FILE (.mp4, .mkv, .mov) "
                        "records every frame shown, with the input file's audio")
    parser.add_argument("--model", choices=LIVE_MODELS,
                        help="portrait (training-free, the default), landmark-warp (classical baseline), "
                        "or fomm (needs --checkpoint)")
    parser.add_argument("--checkpoint", help="FOMM checkpoint (.pth.tar or .safetensors)")
    parser.add_argument("--config", default="vox-256", help="FOMM config name or YAML path (default: vox-256)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--remote", metavar="HOST:PORT", help="render on a `fakelab live --serve` worker")
    parser.add_argument("--serve", type=int, metavar="PORT",
                        help="be a worker for --remote clients on PORT (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the preview page or the worker listens on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8089, help="preview page port (default: 8089; 0: any free port)")
    parser.add_argument("--no-crop", action="store_true", help="use the whole avatar image, not its face crop")
    parser.add_argument("--no-loop", action="store_true", help="stop at the end of an input file instead of looping")
    parser.add_argument("--no-audio", action="store_true", help="record without the input's audio")
    parser.add_argument("--mirror", action="store_true", help="start mirrored")
    parser.add_argument("--overlay", action="store_true", help="start with the driving face shown")
    parser.add_argument("--no-stats", action="store_true", help="start without the fps/latency line")
    parser.add_argument("--no-glitch-check", action="store_true", help="don't check output frames for failures")
    parser.add_argument("--flags-log", metavar="JSONL",
                        help="failure flags per output frame (default: beside the recording, NAME.flags.jsonl)")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    add_provenance_argument(parser)
    parser.set_defaults(handler=run_live_command, keeps_finished_outputs=True)  # a recording closed on stop is kept


def run_live_command(args: argparse.Namespace) -> None:
    from fakelab.errors import FakelabError
    from fakelab.live.api import run_live, serve_worker

    if args.serve is not None:
        if args.remote:
            raise FakelabError("a worker (--serve) renders itself: drop --remote")
        if not 0 <= args.serve <= 65535:
            raise FakelabError(f"--serve {args.serve} is not a port number (0-65535)")

        def serving(worker) -> None:
            print(f"fakelab live: worker on ws://{worker.address} ({worker.model.name}); "
                  f"clients: fakelab live --remote {worker.address} ...; Ctrl-C stops", flush=True)

        frames = serve_worker(args.model, args.checkpoint, args.config, args.device, args.host, args.serve,
                              on_start=serving, duration=args.duration)
        print(f"fakelab live: worker stopped after rendering {frames} frames")
        return
    if not args.source:
        raise FakelabError("give at least one avatar image with --source")
    if not 0 <= args.port <= 65535:
        raise FakelabError(f"--port {args.port} is not a port number (0-65535)")

    def started(session, preview) -> None:
        where = f"; preview at {preview.url}" if preview is not None else ""
        print(f"fakelab live: {session.camera.description} drives {len(session.sources)} avatar(s) with "
              f"{session.status()['model']}{where}; keys r n p o m f q, Ctrl-C stops", flush=True)

    summary = run_live(
        args.source, args.input, args.output or ["preview"],
        model=args.model, checkpoint=args.checkpoint, config=args.config, device=args.device,
        remote=args.remote, crop=not args.no_crop, loop=not args.no_loop, audio=not args.no_audio,
        mirror=args.mirror, overlay=args.overlay, stats=not args.no_stats,
        glitch=not args.no_glitch_check, flags_log=args.flags_log, host=args.host, port=args.port,
        duration=args.duration, on_start=started, provenance=not args.no_provenance,
    )
    print(summary.summary(), file=sys.stdout, flush=True)
