"""Whole photos: facerestore's ``Restorer`` against the official ``GFPGANer.enhance``, same pixels.

Both sides restore the same photos with the same landmarks (the detector is bypassed on both,
so the comparison is of everything after detection), GFPGANv1Clean and ParseNet with the
reference kit's seeded weights, upscale 2, ParseNet paste mask, no background upsampler: the
official CPU configuration. Runs are interleaved (official, ours, ours, official, ...) in one
process and the median per stage is reported, with faces/s, the peak memory a pass adds on top
of the loaded models, and the max abs difference of the outputs (it must be 0 grey levels).
Detection (RetinaFace R50, golden weights) is timed separately: raw forward, and the whole
``detect`` (preprocessing, forward, decoding, NMS).

Needs the reference kit's venv (the official code) with facerestore installed into it:

    ../shared/reference/setup.sh
    /tmp/refenv/bin/pip install -e . --no-deps
    /tmp/refenv/bin/python benchmarks/bench_photos.py /tmp/golden --runs 3

Landmarks: 00.jpg and Blake_Lively.jpg use the kit README's hand-placed ones; for 10045.png our
built-in MTCNN detects once and both sides get its landmarks. The machine is shared: the load
average before and after is printed with the table.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"

# The kit README's landmarks (RetinaFace order, (x, y) rows), as make_golden.py stores them.
LANDMARKS = {
    "00.jpg": [[(818.3, 457.3), (884.0, 456.0), (850.0, 501.7), (831.7, 528.3), (870.0, 527.3)],
               [(560.0, 850.7), (620.7, 851.7), (588.3, 888.3), (566.7, 916.0), (606.0, 915.3)]],
    "Blake_Lively.jpg": [[(150.7, 180.0), (215.0, 203.3), (170.0, 229.0), (132.7, 245.0), (180.0, 260.0)],
                         [(465.0, 159.3), (548.3, 175.0), (499.3, 213.3), (455.0, 237.3), (532.7, 254.0)]],
}
STAGES = ("decode", "align", "network", "parse", "paste", "encode", "other")


class Stages:
    """Seconds per stage, accumulated by wrapping the functions that do each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def wrap(self, owner: object, name: str, stage: str) -> None:
        original = getattr(owner, name)
        had_own = name in getattr(owner, "__dict__", {})

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start)

        setattr(owner, name, timed)
        self._undo.append((owner, name, original if had_own else None))


class PeakRSS:
    """Peak resident memory above the level at start, sampled every 5 ms (Linux /proc)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    @property
    def added_mib(self) -> float:
        return (self.peak - self.base) / 2**20


@contextlib.contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- the two sides


class Official:
    name = "official GFPGANer"

    def __init__(self, golden: Path, reference: Path = REFERENCE) -> None:
        sys.path.insert(0, str(reference))
        import official  # the kit: makes the official code importable on CPU

        gu = official._imp("gfpgan.utils")
        with chdir(golden / "cwd"), contextlib.redirect_stdout(io.StringIO()):
            self.r = gu.GFPGANer(model_path=str(golden / "GFPGANv1Clean" / "ckpt.pth"), upscale=2, arch="clean",
                                 channel_multiplier=2, bg_upsampler=None, device=torch.device("cpu"))
        # The official call leaves randomize_noise=True (fresh noise every call); pin the stored noise.
        self.r.gfpgan.forward = functools.partial(self.r.gfpgan.forward, randomize_noise=False)
        self._landmarks = None
        helper = self.r.face_helper

        def given_landmarks(*args, **kwargs):
            helper.all_landmarks_5 = [np.asarray(lm, np.float32) for lm in self._landmarks]
            return len(helper.all_landmarks_5)

        helper.get_face_landmarks_5 = given_landmarks
        self.stages = Stages()
        self.stages.wrap(helper, "align_warp_face", "align")
        self.stages.wrap(self.r.gfpgan, "forward", "network")
        self.stages.wrap(helper.face_parse, "forward", "parse")
        self.stages.wrap(helper, "paste_faces_to_input_image", "paste")

    def restore(self, img: np.ndarray, landmarks) -> tuple[list[np.ndarray], np.ndarray]:
        self._landmarks = landmarks
        _, restored, out = self.r.enhance(img, has_aligned=False, only_center_face=False, paste_back=True)
        return restored, out

    # detection
    def detector_input(self, img: np.ndarray) -> torch.Tensor:
        det = self.r.face_helper.face_det
        x, _ = det.transform(img, True)
        return x - det.mean_tensor

    def detect_forward(self, x: torch.Tensor):
        with torch.no_grad():
            return self.r.face_helper.face_det(x)

    def detect(self, img: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.r.face_helper.face_det.detect_faces(img, 0.97)


class Ours:
    name = "facerestore Restorer"

    def __init__(self, golden: Path, options: dict) -> None:
        from facerestore import Restorer
        from facerestore.face import align
        from facerestore.face.detectors import load_detector

        self.r = Restorer(model=golden / "GFPGANv1Clean" / "ckpt.pth", upscale=2, detector="mtcnn",
                          parser=golden / "weights" / "parsing_parsenet.pth", **options)
        self.stages = Stages()
        self.stages.wrap(align, "align_faces", "align")
        self.stages.wrap(self.r.net, "forward", "network")
        self.stages.wrap(self.r.parser, "forward", "parse")
        self.stages.wrap(self.r, "paste_back", "paste")
        self.retinaface = load_detector(golden / "weights" / "detection_Resnet50_Final.pth", "cpu")
        backend = self.r.options.backend
        if backend not in (None, "torch"):  # the detector on the engine the Restorer's networks run on
            from facerestore.engines import wrap

            self.retinaface.net = wrap(self.retinaface.net, None, backend, "cpu")
        self.name = f"facerestore ({backend})"

    def restore(self, img: np.ndarray, landmarks) -> tuple[list[np.ndarray], np.ndarray]:
        # weight=1: the official network ignores its weight argument, i.e. always fully restored.
        result = self.r.restore(img, weight=1.0, landmarks=[np.asarray(lm, np.float32) for lm in landmarks])
        return result.restored, result.image

    def detect_forward(self, x: torch.Tensor):
        with torch.inference_mode():
            return self.retinaface.net(x)

    def detect(self, img: np.ndarray) -> np.ndarray:
        return self.retinaface.detect(img, 0.97)


# --------------------------------------------------------------------------- running


def one_pass(side, photos: list[Path], landmarks: dict[str, list]) -> dict:
    """All photos once: seconds per stage, faces, peak added memory, and the outputs."""
    side.stages.seconds = {}
    outputs = {}
    faces = 0
    with PeakRSS() as memory:
        start = time.perf_counter()
        for path in photos:
            t = time.perf_counter()
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            side.stages.add("decode", time.perf_counter() - t)
            restored, out = side.restore(img, landmarks[path.name])
            t = time.perf_counter()
            ok, encoded = cv2.imencode(path.suffix, out)
            side.stages.add("encode", time.perf_counter() - t)
            assert ok
            outputs[path.name] = (restored, out)
            faces += len(restored)
        total = time.perf_counter() - start
    s = dict(side.stages.seconds)
    s["paste"] = s.get("paste", 0.0) - s.get("parse", 0.0)  # the mask's network is inside the paste
    s["other"] = total - sum(s.get(k, 0.0) for k in STAGES if k != "other")
    s["total"] = total
    return dict(seconds=s, faces=faces, peak_mib=memory.added_mib, outputs=outputs)


def max_diff(a: dict, b: dict) -> dict[str, int]:
    diffs = {}
    for name in a:
        faces_a, img_a = a[name]
        faces_b, img_b = b[name]
        face = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(faces_a, faces_b, strict=True))
        diffs[name] = max(face, int(np.abs(img_a.astype(int) - img_b.astype(int)).max()))
        if len(faces_a) != len(faces_b) or img_a.shape != img_b.shape:
            diffs[name] = 255
    return diffs


def bench_detection(sides, photos: list[Path], runs: int) -> dict:
    """Median seconds of the raw R50 forward and of the whole detect, per photo and side."""
    results = {}
    for path in photos:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        x = sides[0].detector_input(img)
        times = {(s.name, k): [] for s in sides for k in ("forward", "detect")}
        dets = {}
        for rep in range(runs + 1):  # the first round warms up and is not counted
            for side in (sides if rep % 2 == 0 else sides[::-1]):
                t = time.perf_counter()
                raw = side.detect_forward(x)
                forward = time.perf_counter() - t
                t = time.perf_counter()
                dets[side.name] = np.asarray(side.detect(img), np.float32)
                detect = time.perf_counter() - t
                if rep:
                    times[(side.name, "forward")].append(forward)
                    times[(side.name, "detect")].append(detect)
                del raw
        a, b = (dets[s.name] for s in sides)
        if a.shape != b.shape:
            diff = float("inf")
        else:
            diff = float(np.abs(a - b).max()) if a.size else 0.0
        results[path.name] = dict(shape=list(img.shape[:2]), faces=[len(a), len(b)], max_abs_diff=diff,
                                  **{f"{side}|{k}": statistics.median(v) for (side, k), v in times.items()})
    return results


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("golden", type=Path, help="folder written by the kit's make_golden.py")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the reference kit's folder")
    parser.add_argument("--runs", type=int, default=3, help="timed passes per side (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-detection", action="store_true")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                        help="engine of facerestore's networks (default auto, the CLI's default); whole "
                             "photos must then be within 1 grey level of the official, on torch equal")
    parser.add_argument("--channels-last", action="store_true",
                        help="ours with facerestore.archs.ops.use_channels_last (faster on CPU, not the same pixels)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", help="comma-separated photo names (a quick check), default all three")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else ["00.jpg", "Blake_Lively.jpg", "10045.png"]
    photos = [args.photos / name for name in names]
    load_before = load_text()

    official, ours = Official(args.golden, args.reference), Ours(args.golden, {"backend": args.backend})
    if args.channels_last:
        from facerestore.archs.ops import use_channels_last

        use_channels_last(ours.r.net)
    landmarks = dict(LANDMARKS)
    for path in photos:
        if path.name not in landmarks:  # MTCNN, once, for both sides
            landmarks[path.name] = ours.r.detect_landmarks(cv2.imread(str(path), cv2.IMREAD_COLOR)).tolist()
    sides = [official, ours]

    # Warm-up (first oneDNN primitives, page faults): one photo per side, not counted.
    for side in sides:
        one_pass(side, photos[:1], landmarks)
    passes: dict[str, list[dict]] = {s.name: [] for s in sides}
    for rep in range(args.runs):
        for side in (sides if rep % 2 == 0 else sides[::-1]):
            passes[side.name].append(one_pass(side, photos, landmarks))
            print(f"  run {rep + 1}/{args.runs} {side.name}: {passes[side.name][-1]['seconds']['total']:.1f} s",
                  file=sys.stderr)
    diffs = max_diff(passes[official.name][-1]["outputs"], passes[ours.name][-1]["outputs"])
    detection = None if args.no_detection else bench_detection(sides, photos, args.runs)
    load_after = load_text()

    med = {name: {k: statistics.median(p["seconds"][k] for p in ps) for k in (*STAGES, "total")}
           for name, ps in passes.items()}
    faces = passes[ours.name][0]["faces"]
    peak = {name: max(p["peak_mib"] for p in ps) for name, ps in passes.items()}
    print(f"\nWhole photos: {', '.join(p.name for p in photos)} ({faces} faces), upscale 2, ParseNet mask, "
          f"no background upsampler; median of {args.runs} interleaved runs, {args.threads} torch threads")
    print(f"{cpu_name()}, torch {torch.__version__}, OpenCV {cv2.__version__}; "
          f"before: {load_before}; after: {load_after}")
    header = f"{'':22}" + "".join(f"{k:>9}" for k in (*STAGES, "total")) + f"{'faces/s':>9}{'peak MiB':>10}"
    print(header)
    for name in med:
        row = f"{name:22}" + "".join(f"{med[name][k]:9.3f}" for k in (*STAGES, "total"))
        print(row + f"{faces / med[name]['total']:9.3f}{peak[name]:10.0f}")
    ratio = {k: med[official.name][k] / med[ours.name][k] if med[ours.name][k] > 0 else float("nan")
             for k in (*STAGES, "total")}
    print(f"{'ratio official/ours':22}" + "".join(f"{ratio[k]:8.2f}x" for k in (*STAGES, "total")))
    print("max abs diff (restored faces and pasted image), grey levels: "
          + ", ".join(f"{k} {v}" for k, v in diffs.items()))
    if detection:
        print(f"\nDetection, RetinaFace R50 (golden weights), median of {args.runs}, seconds:")
        print(f"{'photo':18}{'size':>11}{'fwd off':>9}{'fwd ours':>9}{'ratio':>7}{'det off':>9}{'det ours':>9}"
              f"{'ratio':>7}{'faces':>7}{'max diff':>10}")
        for name, d in detection.items():
            fo, fu = d[f"{official.name}|forward"], d[f"{ours.name}|forward"]
            do, du = d[f"{official.name}|detect"], d[f"{ours.name}|detect"]
            size = "x".join(map(str, d["shape"][::-1]))
            print(f"{name:18}{size:>11}{fo:9.3f}{fu:9.3f}{fo / fu:6.2f}x{do:9.3f}{du:9.3f}{do / du:6.2f}x"
                  f"{'/'.join(map(str, d['faces'])):>7}{d['max_abs_diff']:10.2g}")
    if args.json:
        args.json.write_text(json.dumps(dict(median=med, ratio=ratio, faces=faces, peak_mib=peak, diffs=diffs,
                                             detection=detection, load_before=load_before, load_after=load_after,
                                             cpu=cpu_name(), torch=torch.__version__, runs=args.runs), indent=1))
    return 0 if max(diffs.values()) <= (0 if args.backend == "torch" else 1) else 1


if __name__ == "__main__":
    sys.exit(main())
