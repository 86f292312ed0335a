"""``cocosnet demo``: the Gradio page that translates uploads (:mod:`cocosnet.webdemo`)."""

from __future__ import annotations

import argparse
import json
import sys


def add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="web page to translate uploads (http://127.0.0.1:7860/)")
    demo.add_argument(
        "--checkpoint",
        action="append",
        help="exported model dir; repeat for several (default: every models/*/export)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="other than loopback: warned")
    demo.add_argument("--port", type=int, default=7860, help="0: the first free from 7860")
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--max-upload-mb", type=float, default=10.0, help="per file")
    demo.add_argument("--max-pixels", type=int, default=4096 * 4096, help="per image")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..webdemo import DemoApp, find_checkpoints

    checkpoints = args.checkpoint or find_checkpoints("models")
    if not checkpoints:
        raise ValueError("no models/*/export/model.json: give --checkpoint MODEL_DIR")
    DemoApp(checkpoints)  # refuses a folder without model.json before Gradio starts
    from ..webdemo import start_server

    server = start_server(
        checkpoints,
        host=args.host,
        port=args.port or None,
        device=args.device,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
    )
    print(json.dumps({"serving": server.url, "checkpoints": [str(c) for c in checkpoints]}))
    sys.stdout.flush()
    server.block()
    return 0
