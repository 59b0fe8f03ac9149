"""`facerestore models`: list (with licences), download and verify the released model files, and
prepare the engines' graphs ahead of time (``--prepare``)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, download and verify model files; prepare engine graphs",
                       description="Without options, list the released models, their licences and which are "
                                   "present. Files live in $FACERESTORE_HOME (default ~/.cache/facerestore); "
                                   "engine graphs in $FACERESTORE_GRAPH_CACHE (default: graphs/ "
                                   "there).")
    p.add_argument("--download", nargs="+", metavar="NAME", help="download these models now")
    p.add_argument("--verify", action="store_true", help="re-hash every present file against its sha256")
    p.add_argument("--accept-license", action="append", default=[], metavar="NAME",
                   help="accept the licence of model NAME (non-commercial or unstated licences are never "
                        "downloaded without it; repeat for several; also $FACERESTORE_ACCEPT_LICENSE=NAME,NAME)")
    p.add_argument("--prepare", nargs="*", metavar="NAME",
                   help="export and check the engine graphs of these models (zoo names or files; default: "
                        "every model present) now, for images and cluster nodes, instead of on first use")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino"),
                   help="engine to prepare with --prepare (auto: the one `restore` would pick per model)")
    p.set_defaults(func=run)


def _human(size: int | None) -> str:
    return "?" if size is None else f"{size / 2**20:.1f} MiB"


def prepare(names: list[str], backend: str) -> int:
    """Build (or check) the cached graphs of ``names``; one line per model, 1 if any failed."""
    import time
    import warnings

    from ..engines.cache import cache_root
    from ..engines.module import EngineModule, wrap
    from ..models import zoo
    from ..models.loading import CheckpointError, load_model

    if not names:
        names = [e.name for e in zoo.MODELS if zoo.locate(e) is not None]
        if not names:
            print("no model files present: name the models to prepare (they are downloaded)", file=sys.stderr)
            return 1
    print(f"graph cache: {cache_root()}")
    status = 0
    for name in names:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                net = wrap(load_model(name), backend=backend)
        except (CheckpointError, zoo.ModelUnavailableError, zoo.ChecksumError, RuntimeError, ValueError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        notes = "; ".join(str(w.message) for w in caught)
        engine = net.engine if isinstance(net, EngineModule) else "torch"
        state = "ready" if engine != "torch" else "runs on PyTorch"
        print(f"{name}: {engine} {state} in {time.perf_counter() - start:.1f} s" + (f" ({notes})" if notes else ""))
    return status


def run(args: argparse.Namespace) -> int:
    from ..models import zoo

    if args.prepare is not None:
        return prepare(args.prepare, args.backend)
    status = 0
    zoo.accept_license(*args.accept_license)
    for name in args.download or ():
        entry = zoo.find_entry(name)
        if entry is None:
            print(f"error: unknown model '{name}'", file=sys.stderr)
            status = 1
            continue
        try:
            path = zoo.ensure_model_file(entry)
            print(f"{entry.name}: {path}")
        except (zoo.ModelUnavailableError, zoo.ChecksumError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    if args.download:
        return status
    print(f"cache: {zoo.cache_dir()}")
    fw = max(len(e.filename) for e in zoo.MODELS)  # the StyleGAN2 file name is 47 characters
    dw = max(len(e.description) for e in zoo.MODELS)
    lw = max(len(e.license) for e in zoo.MODELS)
    print(f"{'name':26} {'file':{fw}} {'size':>10}  {'what':{dw}} {'licence':{lw}} status")
    for entry in zoo.MODELS:
        path = zoo.locate(entry)
        state = "-" if path is None else str(path)
        cached = zoo.cached_path(entry)
        if path is None and cached.is_file():
            # locate() ignores a cached file of the wrong size (a partial copy, another model under
            # this name); listing it as absent would hide why every run says it is not cached.
            state = (f"BAD {cached}: {cached.stat().st_size} bytes, expected {entry.size}; "
                     f"delete it or replace it with {entry.filename}")
            status = 1 if args.verify else status
        if path is not None and args.verify:
            try:
                zoo.verify_file(path, entry)
                state = f"ok  {path}"
            except zoo.ChecksumError as exc:
                state, status = f"BAD {exc}", 1
        size = _human(entry.size) if entry.size or not entry.approx_size else f"~{entry.approx_size}"
        print(f"{entry.name:26} {entry.filename:{fw}} {size:>10}  {entry.description:{dw}} {entry.license:{lw}} "
              f"{state}")
    print(f"{'mtcnn':26} {'(built in)':{fw}} {'1.9 MiB':>10}  "
          f"{'offline face detector, shipped with the package':{dw}} {'MIT':{lw}} ok")
    return status
