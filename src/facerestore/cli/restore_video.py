"""The video part of `facerestore restore`: its flags, and the runner for the videos among the
inputs (recognised by content). Not a subcommand of its own: cli/restore.py sends videos here.

Videos go to ``OUT/restored_videos/<name>[_suffix].<ext>``; each is written to a temporary file
and renamed only when complete. A bar shows frames/s and the time left; a line per video says
frames, faces tracked, audio and time.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

VIDEO_FOLDER = "restored_videos"


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video inputs (need PyAV: pip install \"facerestore[video]\")")
    g.add_argument("--video-codec", default="h264",
                   help="output codec: h264, hevc, vp9, av1, ffv1, or an FFmpeg encoder name")
    g.add_argument("--crf", type=float, default=18,
                   help="output quality (constant rate factor): lower is better and larger; 0 is lossless")
    g.add_argument("--video-preset", default="medium",
                   help="encoder speed preset (x264/x265: ultrafast ... veryslow)")
    g.add_argument("--video-ext", default="mp4", help="output container: mp4, mov, mkv, webm, avi")
    g.add_argument("--pix-fmt", default="yuv420p", help="output pixel format (yuv420p plays everywhere)")
    g.add_argument("--no-audio", action="store_true", help="drop the audio instead of copying it")
    g.add_argument("--no-smooth", action="store_true",
                   help="restore each frame on its own (raw landmarks, no smoothing, missed faces not carried)")
    g.add_argument("--detect-every", type=int, default=1,
                   help="run the face detector on every N-th frame and follow faces by optical flow between")
    g.add_argument("--max-misses", type=int, default=10,
                   help="frames a face may go undetected before it is dropped")
    g.add_argument("--smooth-cutoff", type=float, default=0.5,
                   help="landmark smoothing of still faces, in Hz (lower is steadier)")
    g.add_argument("--smooth-beta", type=float, default=8.0,
                   help="how quickly smoothing gives way to motion (higher follows faster)")
    g.add_argument("--max-frames", type=int, default=None, help="refuse videos longer than this many frames")


def video_options(args: argparse.Namespace, options):
    """The video settings from the parsed flags and the run's :class:`RestoreOptions`."""
    from ..pipeline.video import VideoOptions

    return VideoOptions(
        weight=options.weight, only_center_face=options.only_center_face, smooth=not args.no_smooth,
        detect_every=args.detect_every, max_misses=args.max_misses, min_cutoff=args.smooth_cutoff,
        beta=args.smooth_beta, codec=args.video_codec, crf=args.crf, preset=args.video_preset,
        pix_fmt=args.pix_fmt, container=args.video_ext.lstrip("."), copy_audio=not args.no_audio,
        max_pixels=options.max_pixels, max_output_pixels=options.max_output_pixels,
        max_frames=args.max_frames).validate()


def run_videos(args: argparse.Namespace, options, videos: list[Path], out_dir: Path, note,
               stems: dict[Path, str] | None = None,
               outcomes: list[tuple[Path, str | None]] | None = None) -> tuple[object, int]:
    """Restore ``videos`` into ``out_dir/restored_videos``; returns the loaded restorer (for the
    photos of the same run) and an exit status (0 all done, 1 some failed, 2 bad options,
    130 interrupted). ``outcomes`` (when given) gets ``(video, None or error)`` per video tried,
    for the shard summary."""
    outcomes = [] if outcomes is None else outcomes
    from tqdm.auto import tqdm

    from ..io.video import VideoError, require_av
    from ..pipeline.batch import output_stems
    from ..pipeline.options import OptionsError, check_output_folder
    from ..pipeline.restorer import Restorer

    try:
        require_av()
    except ImportError as exc:  # the photos of the run still go ahead
        print(f"error: {len(videos)} video(s) not restored: {exc}", file=sys.stderr)
        return None, 1
    try:
        if options.aligned:
            raise OptionsError("--aligned", "is for aligned face photos, not videos")
        vopts = video_options(args, options)
        check_output_folder(out_dir)
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
    restorer = Restorer(options)
    for message in restorer.notes:
        note(message)

    stems = stems or output_stems(videos, note)
    tail = f"_{options.suffix}" if options.suffix else ""
    failed = 0
    resume = getattr(args, "skip_existing", False) or getattr(args, "shard", None) is not None
    for src in videos:
        dst = out_dir / VIDEO_FOLDER / f"{stems[src]}{tail}.{vopts.container}"
        if resume and dst.is_file():  # written atomically: present means complete
            note(f"{src.name}: {dst} is already complete, skipped")
            continue
        bar = tqdm(desc=src.name, unit="frame", disable=not sys.stderr.isatty(), leave=False)

        def progress(done: int, total: int | None, bar=bar) -> None:
            if total is not None and bar.total != total:
                bar.total = max(total, done)
                bar.refresh()
            bar.update(done - bar.n)

        try:
            if dst.exists() and dst.resolve() == src.resolve():
                raise VideoError(dst, "would overwrite its input; choose another output folder")
            summary = restorer.enhance_video(src, dst, options=vopts, on_progress=progress, on_note=note)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: {src.name} was not written", file=sys.stderr)
            return restorer, 130
        except (VideoError, OSError) as exc:
            bar.close()
            failed += 1
            outcomes.append((src, str(exc).removeprefix(f"{src}: ")))  # the summary names the file itself
            print(f"error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # one bad video must not stop the others
            bar.close()
            failed += 1
            outcomes.append((src, f"{type(exc).__name__}: {exc}"))
            print(f"error: {src}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if args.verbose:
                traceback.print_exception(exc)
            continue
        bar.close()
        outcomes.append((src, None))
        print(summary.report())
    print(f"{len(videos) - failed}/{len(videos)} videos restored into {out_dir / VIDEO_FOLDER}/")
    return restorer, 1 if failed else 0
