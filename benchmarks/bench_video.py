"""Video restoration speed (frames/s) and steadiness, per mode, on a clip built here.

    python benchmarks/bench_video.py [--frames 24] [--size 480x360] [--face 128] [--model PATH|tiny|random]
                                     [--detector mtcnn] [--device cpu] [--threads 2] [--upscale 2]

The clip: a face from ../shared/data/aligned gliding smoothly over a textured background (the
true landmarks of every frame are known), H.264, with a tone as audio. Each mode restores it with
the same Restorer; the table gives frames/s, the ratio to the per-frame mode measured in the same
run (> 1: faster), and the flicker: mean absolute frame-to-frame change (grey levels) of the
output's face cut at its true position every frame, so motion does not count and whatever
changes is shimmer. Modes:

  io-only        decode + upscale + encode, no face work: the ceiling
  per-frame      --no-smooth: each frame detected and restored on its own (the baseline)
  steady         the default: tracking + one-euro landmark smoothing
  steady-det4    detector on every 4th frame, optical flow in between
  steady-batch4  as steady, faces of 4 frames per network call (helps on GPU)

``--model random`` (default) is a GFPGANv1.4-shaped network with random weights (speed is that
of the real one; the face it paints is noise); ``tiny`` a 64 px one for a quick run; or give a
weights file / zoo name that is on disk.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ALIGNED = REPO.parent / "shared" / "data" / "aligned"


def make_clip(path: Path, face: np.ndarray, frames: int, width: int, height: int, fps: int = 25):
    """Write the clip; returns the true top-left corner of the face in each frame."""
    import av


    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 4)
    bg = np.clip(0.5 * bg + 0.5 * np.linspace(40, 200, width)[None, :, None], 0, 255).astype(np.uint8)
    size = face.shape[0]
    oval = np.zeros((size, size), np.float32)
    cv2.ellipse(oval, (size // 2, size // 2), (size // 2 - size // 10, size // 2 - size // 30), 0, 0, 360, 1, -1)
    oval = cv2.GaussianBlur(oval, (0, 0), size / 32)
    corners = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps, options={"crf": "14", "preset": "veryfast"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        for i in range(frames):
            t = i / max(frames - 1, 1)
            x = (width - size) * (0.15 + 0.7 * t)
            y = (height - size) * (0.5 + 0.2 * math.sin(2 * math.pi * t))
            corners.append((x, y))
            m = np.float32([[1, 0, x], [0, 1, y]])
            moved = cv2.warpAffine(face, m, (width, height))
            mask = cv2.warpAffine(oval, m, (width, height))[:, :, None]
            img = (moved * mask + bg * (1 - mask)).round().astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        n = int(48000 * frames / fps)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)
        for k in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return corners


def flicker(path: Path, corners, face_size: int, upscale: float) -> float:
    import av

    from facerestore.face import align

    template = align.face_template(face_size)
    crops = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(c.streams.video[0])):
            img = cv2.cvtColor(f.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR)
            lm = (template + corners[i]) * upscale
            crops.append(align.align_faces(img, [lm], 128)[0][0].astype(np.float64))
    return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(crops)]))


class NoFaces:
    def detect(self, img, conf_threshold=0.97):
        return np.zeros((0, 15), np.float32)


def build_model(choice: str, folder: Path):
    from facerestore.archs.gfpgan import GFPGANv1Clean

    if choice not in ("random", "tiny"):
        return choice
    torch.manual_seed(0)
    if choice == "tiny":
        net = GFPGANv1Clean(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.0625,
                            different_w=True, input_is_latent=True, sft_half=True)
    else:  # the GFPGANv1.4 architecture
        net = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, narrow=1,
                            different_w=True, input_is_latent=True, sft_half=True)
    path = folder / f"{choice}.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="480x360")
    ap.add_argument("--face", type=int, default=128, help="side of the face in the clip, pixels")
    ap.add_argument("--model", default="random", help="random (v1.4-shaped), tiny, a weights file or zoo name")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--upscale", type=float, default=2)
    ap.add_argument("--only", default=None, help="comma-separated modes to run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import av  # noqa: F401
    except ImportError:
        print('needs PyAV: pip install -e ".[video]"')
        return 2
    from facerestore import Restorer

    src_face = ALIGNED / "Julia_Roberts_crop.png"
    if not src_face.is_file():
        print(f"needs {src_face}")
        return 2
    width, height = map(int, args.size.lower().split("x"))
    face = cv2.resize(cv2.imread(str(src_face)), (args.face, args.face), interpolation=cv2.INTER_AREA)
    modes = {
        "io-only": dict(detector=NoFaces()),
        "per-frame": dict(smooth=False),
        "steady": dict(),
        "steady-det4": dict(detect_every=4),
        "steady-batch4": dict(batch_frames=4),
    }
    if args.only:
        wanted = [m.strip() for m in args.only.split(",")]
        modes = {k: v for k, v in modes.items() if k in wanted or k == "per-frame"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "clip.mp4"
        corners = make_clip(src, face, args.frames, width, height)
        input_flicker = flicker(src, corners, args.face, 1.0)
        model = build_model(args.model, tmp)
        restorers = {}
        rows = []
        for name, kw in modes.items():
            kw = dict(kw)
            detector = kw.pop("detector", args.detector)
            key = "none" if isinstance(detector, NoFaces) else detector
            if key not in restorers:
                restorers[key] = Restorer(model=model, upscale=args.upscale, detector=detector, parser=None,
                                          bg_upsampler=None, device=args.device)
            r = restorers[key]
            out = tmp / f"{len(rows)}.mp4"
            start = time.perf_counter()
            summary = r.enhance_video(src, out, preset="veryfast", **kw)
            seconds = time.perf_counter() - start
            fl = flicker(out, corners, args.face, args.upscale)
            rows.append((name, summary.frames, summary.face_frames, seconds, summary.frames / seconds, fl))
            print(f"  {name}: done", file=sys.stderr)
    base = next(r for r in rows if r[0] == "per-frame")
    print(f"clip {width}x{height}, {args.frames} frames, face {args.face} px, model {args.model}, "
          f"detector {args.detector}, device {args.device}, {args.threads} threads, upscale {args.upscale:g}")
    print(f"{'mode':<15} {'frames':>6} {'faces':>6} {'seconds':>8} {'frames/s':>9} {'vs per-frame':>13} {'flicker':>8}")
    for name, frames, faces, seconds, fps, fl in rows:
        print(f"{name:<15} {frames:>6} {faces:>6} {seconds:>8.2f} {fps:>9.2f} {fps / base[4]:>12.2f}x {fl:>8.2f}")
    print(f"(flicker of the input clip itself, same measure: {input_flicker:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
