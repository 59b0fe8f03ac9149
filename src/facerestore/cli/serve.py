"""`facerestore serve`: the web page and REST API (needs `pip install "facerestore[serve]"`)."""
from __future__ import annotations

import argparse
import sys

from . import DefaultsHelpFormatter
from .restore import _add_control_flags


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the web page and REST API (pip install \"facerestore[serve]\")",
        description="Serve the restoration page at / and the REST API at /v1 (OpenAPI at /docs). "
                    "Binds to 127.0.0.1 unless --host says otherwise: put a reverse proxy with TLS "
                    "in front before exposing it. A request's weight means what `restore -w` means for "
                    "its model: a blend of restored and input face (GFPGAN, RestoreFormer(++), GPEN), or "
                    "CodeFormer's fidelity (0 = quality, 1 = fidelity).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--model", action="append", default=None,
                   help="a face model requests may choose: zoo name or weights file (GFPGAN, "
                        "RestoreFormer(++), CodeFormer, GPEN); repeat for several, the first is the default "
                        "(default: v1.4)%(default).0s")
    p.add_argument("--accept-license", action="append", default=[], metavar="NAME",
                   help="accept the licence of model NAME: non-commercial (codeformer) or unstated (GPEN) "
                        "licences are never downloaded without it; repeat for several; also "
                        "$FACERESTORE_ACCEPT_LICENSE=NAME,NAME")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    p.add_argument("--detector", default="auto", help="face detector (as for `facerestore restore`)")
    p.add_argument("--backend", default=None, choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="engine the networks run on, loaded once per process (as for `facerestore restore`; "
                        "default: $FACERESTORE_BACKEND or auto)")
    p.add_argument("--parser", default="parsenet", help="face parser for the paste mask, or none")
    p.add_argument("--bg_upsampler", "--bg-upsampler", default="none",
                   help="background upsampler requests may turn on: none, realesrgan, a zoo name or a file")
    p.add_argument("--bg_tile", "--bg-tile", type=int, default=400,
                   help="tile size for the background upsampler (0: whole image at once)")
    p.add_argument("--half", action="store_true", help="face network in half precision (as for `restore`)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="faces per network call")
    p.add_argument("--seed", type=int, default=None, help="draw fresh StyleGAN noise from this seed")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload accepted (413 above)")
    p.add_argument("--max-pixels", type=float, default=40_000_000, help="largest image accepted, in pixels (413 above)")
    p.add_argument("--max-output-pixels", type=float, default=100_000_000,
                   help="largest result, in pixels (422 above)")
    p.add_argument("--max-upscale", type=float, default=4, help="largest upscale a request may ask for")
    p.add_argument("--max-concurrency", type=int, default=1, help="restorations run at once")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for a slot (503 beyond)")
    p.add_argument("--queue-timeout", type=float, default=60, help="seconds a request waits for a slot")
    p.add_argument("--job-timeout", type=float, default=300, help="seconds a restoration may take")
    p.add_argument("--upload-timeout", type=float, default=30,
                   help="seconds an upload may send nothing (408 after); also the grace before --upload-min-rate-kb")
    p.add_argument("--upload-min-rate-kb", type=float, default=10,
                   help="slowest average upload accepted after the first --upload-timeout seconds, in KB/s (408 below)")
    p.add_argument("--max-uploads", type=int, default=32, help="uploads received at once (503 beyond)")
    p.add_argument("--no-download", action="store_true", help="never download model files")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    # The restoration settings of `facerestore restore`, applied to every request. Identity scores
    # are off unless asked for: each costs an ArcFace pass per face on every request.
    _add_control_flags(p, identity_default="none", report=False)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The server's settings; ``restore`` holds the same RestoreOptions ``facerestore restore`` fills."""
    from ..pipeline.options import OptionsError, RestoreOptions
    from ..serve.config import MB, ServeConfig

    # Flags in MB or KB are checked in those units: converted first, -1 MB read as -1048576.
    if not args.max_upload_mb * MB >= 1:
        raise OptionsError("--max-upload-mb", f"must be more than 0 MB, got {args.max_upload_mb:g} MB")
    if not args.upload_min_rate_kb >= 0:
        raise OptionsError("--upload-min-rate-kb", f"must be at least 0 KB/s, got {args.upload_min_rate_kb:g} KB/s")

    restore = RestoreOptions(
        bg_upsampler=args.bg_upsampler, bg_tile=args.bg_tile, detector=args.detector, parser=args.parser,
        device=args.device, allow_download=not args.no_download, half=args.half, batch_size=args.batch_size,
        seed=args.seed, color_match=args.color_match, identity_model=args.identity_model,
        min_identity=args.min_identity, identity_fallback=args.identity_fallback,
        det_threshold=args.det_threshold, min_face=args.min_face, landmark_check=args.landmark_check,
        **({"backend": args.backend} if args.backend else {}))
    return ServeConfig(
        models=args.model or ["v1.4"], restore=restore,
        max_upload_bytes=int(args.max_upload_mb * MB), max_pixels=int(args.max_pixels),
        max_output_pixels=int(args.max_output_pixels), max_upscale=args.max_upscale,
        max_concurrency=args.max_concurrency, queue_size=args.queue, queue_timeout=args.queue_timeout,
        job_timeout=args.job_timeout, upload_timeout=args.upload_timeout,
        upload_min_rate=args.upload_min_rate_kb * 1024, max_uploads=args.max_uploads)


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"error: `facerestore serve` needs the serve extra ({exc.name} is missing): "
              "pip install \"facerestore[serve]\"", file=sys.stderr)
        return 2
    from ..models.zoo import accept_license
    from ..pipeline.options import OptionsError
    from ..serve import create_app

    accept_license(*args.accept_license)

    try:
        config = config_from_args(args).validate()
        app = create_app(config.replace(preload=False))
        service = app.state.service
        service.check_models()  # every --model, not only the default that is loaded below
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
