"""`facerestore restore`: the official inference_gfpgan.py, as a front-end of the shared pipeline.

This module only turns flags into :class:`~facerestore.pipeline.options.RestoreOptions` and
renders what :func:`~facerestore.pipeline.batch.run_batch` reports (notes, errors, a progress bar,
the summary); the work is done by the pipeline.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import DefaultsHelpFormatter
from .restore_video import add_video_arguments, run_videos


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore", help="restore the faces in photos (the official inference_gfpgan.py flags work)",
        description="Detect, align, restore and paste back every face of each photo (and video frame). "
                    "Flags keep the spellings of the official inference_gfpgan.py. Face models: GFPGAN, "
                    "RestoreFormer(++), CodeFormer, GPEN (--model; -w is a blend for most, CodeFormer's fidelity).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("-i", "--input", default="inputs/whole_imgs",
                   help="an image or video, a folder of them, or a .txt file listing their paths (one per "
                        "line); videos are recognised by content")
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("-v", "--version", default="1.4",
                   help="official model version: 1, 1.2, 1.3, 1.4 or RestoreFormer (see --model)")
    p.add_argument("--model", default=None,
                   help="a zoo name or a weights file (.pth/.ckpt/.safetensors); overrides -v. GFPGAN, "
                        "RestoreFormer(++), CodeFormer (codeformer) or GPEN (gpen-bfr-512, gpen-bfr-256)")
    p.add_argument("--accept-license", action="append", default=[], metavar="NAME",
                   help="accept the licence of model NAME: non-commercial (codeformer) or unstated (GPEN) "
                        "licences are never downloaded without it; repeat for several; also "
                        "$FACERESTORE_ACCEPT_LICENSE=NAME,NAME")
    p.add_argument("-s", "--upscale", type=float, default=2, help="final upsampling scale of the image")
    p.add_argument("--bg_upsampler", "--bg-upsampler", default="realesrgan",
                   help="background upsampler: realesrgan (as the official CLI: on GPU only, and only "
                        "when its weights can be had; otherwise the background is resized), none, or a "
                        "zoo name (realesrgan-x2plus, realesrgan-x4plus) or weights file, used on any device")
    p.add_argument("--bg_tile", "--bg-tile", type=int, default=400,
                   help="tile size for the background upsampler, 0 for no tiling")
    p.add_argument("--suffix", default=None, help="suffix of the restored faces")
    p.add_argument("--only_center_face", "--only-center-face", action="store_true",
                   help="only restore the face nearest the centre")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are aligned faces (resized to the model's input size: 512x512, 256x256 for "
                        "gpen-bfr-256); no detection, no paste")
    p.add_argument("--ext", default="auto", choices=("auto", "jpg", "png"),
                   help="output image extension; auto keeps the input's")
    p.add_argument("-w", "--weight", type=float, default=0.5,
                   help="GFPGAN, RestoreFormer(++), GPEN: blend of restored and input face, 0 = input, "
                        "1 = fully restored. CodeFormer: its fidelity weight w (no blend), 0 = quality, "
                        "1 = fidelity to the input")
    p.add_argument("--detector", default="auto",
                   help="face detector: auto (RetinaFace if its weights are present, else the built-in "
                        "MTCNN), mtcnn, retinaface-resnet50, retinaface-mobilenet0.25, or a weights file")
    p.add_argument("--parser", default="parsenet",
                   help="face parsing model for the paste mask (parsenet, none, or a file); "
                        "none uses a soft square mask")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    p.add_argument("--half", action="store_true",
                   help="face network in half precision: fp16 on CUDA, bf16 on CPUs that have it (OpenVINO "
                        "or PyTorch; a CPU without bf16 runs fp32, with a note); differs from fp32 by a few "
                        "grey levels")
    p.add_argument("--backend", default=None, choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="engine the networks run on; auto: the fastest installed (OpenVINO, then onnxruntime "
                        "on CPU; PyTorch on GPUs and without the extras). Each network within 1e-4 of "
                        "PyTorch; whole photos within 1-2 grey levels; torch keeps the official pixels "
                        "(default: $FACERESTORE_BACKEND or auto)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="faces per network call, across the faces of a photo and of consecutive photos "
                        "(default: by free GPU memory, at most 16; 1 on CPU)")
    p.add_argument("--seed", type=int, default=None,
                   help="draw fresh StyleGAN noise from this seed (default: the model's stored noise, "
                        "so results are reproducible)")
    p.add_argument("--max-pixels", type=float, default=100e6,
                   help="refuse images with more pixels than this (protects memory)")
    p.add_argument("--max-output-pixels", type=float, default=400e6,
                   help="refuse a result with more pixels than this (checked before the work)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="process only share I of N of the inputs (default: from RANK/WORLD_SIZE as torchrun "
                        "sets them, or SLURM's task ids); writes OUT/summary-shardI-ofN.json")
    p.add_argument("--skip-existing", "--resume", action="store_true",
                   help="skip inputs whose results are already complete (restart a killed run with it); "
                        "on by default when sharded")
    p.add_argument("--no-download", action="store_true", help="never download model files")
    _add_control_flags(p)
    _add_ray_flags(p)
    p.add_argument("--verbose", action="store_true", help="show tracebacks for failures")
    add_video_arguments(p)
    p.set_defaults(func=run)


def _add_control_flags(p: argparse.ArgumentParser, *, identity_default: str = "auto", report: bool = True) -> None:
    """Colour match, identity score, detector settings and the JSON report (issue 10); ``serve``
    takes the same flags (without the report)."""
    g = p.add_argument_group("control and trust")
    g.add_argument("--color-match", "--colour-match", action="store_true",
                   help="match each restored face's colours (Lab mean/std) to its input face, so skin "
                        "tone stays that of the photo")
    g.add_argument("--identity-model", default=identity_default,
                   help="ArcFace network for identity scores: auto (arcface-resnet18 if on disk, never "
                        "downloads), none, a zoo name or a weights file")
    g.add_argument("--min-identity", type=float, default=None, metavar="X",
                   help="keep the input face where the identity score (cosine, -1..1) falls below X")
    g.add_argument("--identity-fallback", choices=("input", "lower"), default="input",
                   help="with --min-identity: keep the input face, or use the highest lower weight "
                        "(3/4, 1/2, 1/4 of -w) that reaches X")
    g.add_argument("--det-threshold", type=float, default=None, metavar="SCORE",
                   help="detector score a face needs, 0..1 (default: the detector's own, 0.97)")
    g.add_argument("--min-face", type=int, default=None, metavar="PIXELS",
                   help="skip faces whose detected box is smaller than this (shorter side)")
    g.add_argument("--no-landmark-check", dest="landmark_check", action="store_false",
                   help="restore every detection, even ones whose landmarks cannot be a face")
    if not report:
        return
    g.add_argument("--report", default=None, metavar="FILE.json",
                   help="write a JSON record of the run: per face box, score, landmarks, identity, "
                        "weight and outputs; options, versions and model hashes (docs/report-schema.json)")


def _add_ray_flags(p: argparse.ArgumentParser) -> None:
    """A run on a Ray cluster (issue 17; the extra `ray`): see facerestore/ray and cli/restore_ray.py."""
    g = p.add_argument_group("on a Ray cluster (pip install 'facerestore[ray]')")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or this shard); ray: an actor pool on a Ray cluster, -i/-o may "
                        "then also be URIs (s3://, gs://, ...), photos only")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the cluster to join (auto, ray://HOST:10001); default: RAY_ADDRESS, else a local one")
    g.add_argument("--actors", default="1", metavar="N|MIN-MAX",
                   help="actors (model copies) in the pool; MIN-MAX lets the pool grow with the cluster")
    g.add_argument("--gpus-per-actor", type=float, default=0.0, metavar="X",
                   help="GPUs each actor holds (0.5: two share one); above 0, --device cpu becomes cuda")
    g.add_argument("--cpus-per-actor", type=float, default=1.0, metavar="X",
                   help="CPUs each actor holds (its PyTorch threads)")


def options_from_args(args: argparse.Namespace):
    """The run's options from the parsed flags (validated later, once, by the pipeline)."""
    from ..pipeline.options import RestoreOptions, model_for_version

    return RestoreOptions(
        model=args.model or model_for_version(args.version), bg_upsampler=args.bg_upsampler,
        bg_tile=args.bg_tile, detector=args.detector, parser=args.parser, device=args.device,
        allow_download=not args.no_download, upscale=args.upscale, weight=args.weight,
        only_center_face=args.only_center_face, aligned=args.aligned, seed=args.seed,
        suffix=args.suffix, ext=args.ext, max_pixels=_count(args.max_pixels),
        max_output_pixels=_count(args.max_output_pixels), color_match=args.color_match,
        identity_model=args.identity_model, min_identity=args.min_identity,
        identity_fallback=args.identity_fallback, det_threshold=args.det_threshold, min_face=args.min_face,
        landmark_check=args.landmark_check, report=Path(args.report) if args.report else None,
        half=args.half, batch_size=args.batch_size,
        **({"backend": args.backend} if args.backend else {}))


def _shard_summary(shard, videos: int, video_outcomes: list[tuple[Path, str | None]], *, interrupted: bool):
    """The shard summary's video part; the photos' counts are added to it by the caller."""
    from ..pipeline.shard import ShardSummary

    return ShardSummary(shard=str(shard), inputs=videos,
                        restored=sum(e is None for _, e in video_outcomes),
                        restored_files=[str(v) for v, e in video_outcomes if e is None],
                        failed=[{"file": str(v), "error": e} for v, e in video_outcomes if e is not None],
                        interrupted=interrupted)


def _count(value: float) -> float | int:
    # 1e8 from the command line is a float; keep non-finite values for validation to name.
    return int(value) if value == value and abs(value) != float("inf") else value


def _local_device(device: str) -> str:
    """One GPU per process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun/SLURM."""
    import os

    local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID"))
    return f"cuda:{int(local)}" if device == "cuda" and local is not None else device


def _note(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Restore; a model that cannot be had or is of the wrong kind fails at start-up, exit 2."""
    from ..models.loading import CheckpointError
    from ..models.zoo import ModelUnavailableError, accept_license

    accept_license(*getattr(args, "accept_license", []))
    try:
        return _run(args)
    except (CheckpointError, ModelUnavailableError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from .restore_ray import run_on_ray

        return run_on_ray(args, options_from_args, _note)
    from tqdm.auto import tqdm

    from ..io.images import ImageReadError, scan_inputs
    from ..io.video import folder_videos, split_videos
    from ..pipeline.batch import OUTPUT_FOLDERS, output_stems, run_batch
    from ..pipeline.options import OptionsError
    from ..pipeline.results import FileResult
    from ..pipeline.shard import (
        already_complete,
        parse_shard,
        read_input_list,
        shard_from_env,
        take_shard,
    )

    try:
        options = options_from_args(args).validate()
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inputs = Path(args.input)
    try:
        if inputs.suffix.lower() == ".txt" and inputs.is_file():
            files = read_input_list(inputs)
        else:
            scan = scan_inputs(inputs)
            for path, reason in scan.skipped:
                _note(f"skipped {path}: {reason}")
            files = scan.files + folder_videos(inputs)  # videos: by content, whatever their names
    except ImageReadError as exc:
        print(f"error: input {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no images or videos found in {inputs}", file=sys.stderr)
        return 2
    try:
        shard = parse_shard(args.shard) if args.shard else shard_from_env()
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.report is not None and options.report.resolve() in {Path(f).resolve() for f in files}:
        print(f"error: --report: {options.report} is one of the inputs; inputs are never written to",
              file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    stems = output_stems(files, _note)  # over all inputs, so shards agree on names
    if shard is not None:
        files = take_shard(files, shard)
        options = options.replace(device=_local_device(options.device))
        if options.report is not None:  # one report per shard, not one file written by all
            report = options.report
            options = options.replace(report=report.with_name(f"{report.stem}.shard{shard.index}-of{shard.count}"
                                                              f"{report.suffix or '.json'}"))
    files, videos = split_videos(files)
    restorer, video_status = None, 0
    if videos and options.report is not None:  # the report schema has no video records yet
        _note(f"--report records photos only; the {len(videos)} video(s) of this run are not in it"
              + ("" if files else ", so no report is written"))
    video_outcomes: list[tuple[Path, str | None]] = []
    if videos:  # videos first (cli/restore_video.py); the photos then reuse its loaded models
        restorer, video_status = run_videos(args, options, videos, out_dir, _note, stems, video_outcomes)
        if not files or video_status in (2, 130):
            if shard is not None and video_status != 2:  # else `summarize` calls this shard missing
                interrupted = video_status == 130
                _shard_summary(shard, len(videos), video_outcomes, interrupted=interrupted).write(out_dir, shard)
            return video_status

    def on_file(result: FileResult) -> None:
        if result.error is not None:
            tqdm.write(f"error: {result.error}", file=sys.stderr)
            if args.verbose and result.exception is not None:
                traceback.print_exception(result.exception)

    def progress(items):
        return tqdm(items, desc="restoring", unit="img", disable=len(files) < 2 or not sys.stderr.isatty())

    share = len(files)
    if args.skip_existing or shard is not None:
        files = [f for f in files if not already_complete(f, out_dir, options, stems[f])]
    skipped = share - len(files)
    if skipped:
        _note(f"{skipped} of {share} inputs already have complete results and are skipped")
    try:
        summary = run_batch(files, out_dir, options, restorer=restorer, on_note=_note, on_file=on_file,
                            progress=progress, stems=stems)
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if shard is not None:
        total = _shard_summary(shard, len(videos), video_outcomes, interrupted=summary.interrupted)
        total.inputs += share
        total.skipped_complete = skipped
        total.restored += summary.succeeded
        total.faces = summary.faces
        total.restored_files += [str(r.path) for r in summary.results if r.ok]
        total.failed += [{"file": str(p), "error": e} for p, e in summary.failures]
        total.seconds = summary.seconds
        total.write(out_dir, shard)
        print(f"shard {shard}: {total.inputs} inputs, {skipped} already complete")
    print(summary.report())
    written = [name for name in OUTPUT_FOLDERS if (out_dir / name).is_dir()]  # --aligned has no restored_imgs
    if written:
        print(f"results in {out_dir}/" + "{" + ",".join(written) + "}")
    if options.report is not None:
        if summary.report_path is None:
            return 1  # the note said why
        print(f"report in {summary.report_path}")
    if summary.interrupted:
        return 130
    return max(video_status, 1 if summary.failures else 0)
