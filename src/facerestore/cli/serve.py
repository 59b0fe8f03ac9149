"""`facerestore serve`: the web page and REST API (needs `pip install "facerestore[serve]"`)."""
from __future__ import annotations

import argparse
import sys
from . import DefaultsHelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the web page and REST API (pip install \"facerestore[serve]\")",
        description="Serve the restoration page at / and the REST API at /v1 (OpenAPI at /docs). "
                    "Binds to 127.0.0.1 unless --host says otherwise: put a reverse proxy with TLS "
                    "in front before exposing it.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--model", action="append", default=None,
                   help="a face model requests may choose: zoo name or weights file; repeat for several, "
                        "the first is the default (default: v1.4)%(default).0s")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    p.add_argument("--detector", default="auto", help="face detector (as for `facerestore restore`)")
    p.add_argument("--backend", default=None, choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="engine the networks run on, loaded once per process (as for `facerestore restore`; "
                        "default: $FACERESTORE_BACKEND or auto)")
    p.add_argument("--parser", default="parsenet", help="face parser for the paste mask, or none")
    p.add_argument("--bg_upsampler", "--bg-upsampler", default="none",
                   help="background upsampler requests may turn on: none, realesrgan, a zoo name or a file")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload accepted (413 above)")
    p.add_argument("--max-pixels", type=float, default=40_000_000, help="largest image accepted, in pixels (413 above)")
    p.add_argument("--max-output-pixels", type=float, default=100_000_000,
                   help="largest result, in pixels (422 above)")
    p.add_argument("--max-upscale", type=float, default=4, help="largest upscale a request may ask for")
    p.add_argument("--max-concurrency", type=int, default=1, help="restorations run at once")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for a slot (503 beyond)")
    p.add_argument("--queue-timeout", type=float, default=60, help="seconds a request waits for a slot")
    p.add_argument("--job-timeout", type=float, default=300, help="seconds a restoration may take")
    p.add_argument("--no-download", action="store_true", help="never download model files")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from ..serve.config import MB, ServeConfig

    return ServeConfig(
        models=args.model or ["v1.4"], bg_upsampler=None if args.bg_upsampler.lower() == "none" else args.bg_upsampler,
        detector=args.detector, parser=args.parser, device=args.device, allow_download=not args.no_download,
        **({"backend": args.backend} if args.backend else {}),
        max_upload_bytes=int(args.max_upload_mb * MB), max_pixels=int(args.max_pixels),
        max_output_pixels=int(args.max_output_pixels), max_upscale=args.max_upscale,
        max_concurrency=args.max_concurrency, queue_size=args.queue, queue_timeout=args.queue_timeout,
        job_timeout=args.job_timeout)


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"error: `facerestore serve` needs the serve extra ({exc.name} is missing): "
              "pip install \"facerestore[serve]\"", file=sys.stderr)
        return 2
    from ..pipeline.options import OptionsError
    from ..serve import create_app

    try:
        config = config_from_args(args).validate()
        app = create_app(config.replace(preload=False))
        service = app.state.service
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Load the default model before listening: a wrong --model fails here, not on the first request.
    print(f"loading {service.default_model} on {config.device} ...", file=sys.stderr)
    service.load_default()
    for note in service.load_notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs); Ctrl-C stops", file=sys.stderr)
    # uvicorn's own concurrency limit stays off: ours answers 503 with Retry-After per request.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
