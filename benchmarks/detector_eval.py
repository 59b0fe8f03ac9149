"""Measure the embedded MTCNN detector: face counts, scores, false positives, speed, alignment.

    python benchmarks/detector_eval.py [--data ../shared/data] [--threads 2] [--runs 2]

Prints two markdown tables (the numbers in docs/offline-detector.md come from this script):
1. per image: expected and found faces (score >= the default conf_threshold), lowest face score,
   highest score among all O-Net outputs (conf_threshold 0, so a near-miss on a face-free image
   shows), and wall and CPU time (each the minimum of --runs runs after one warm-up, detection +
   landmarks for the whole image);
2. alignment: each official 512 aligned crop is aligned again with our 5 points to the FFHQ
   template (cv2.estimateAffinePartial2D, LMEDS); the identity transform would be perfect.
"""

from __future__ import annotations

import argparse
import inspect
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facerestore.face.mtcnn import MTCNNDetector

# facexlib's FFHQ 5-point template for 512x512 crops (see shared/specs/facts.md).
TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                         [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)
PHOTOS = {"00.jpg": 2, "10045.png": 3, "Blake_Lively.jpg": 2}
CROPS = ["Adele", "Julia_Roberts", "Justin_Timberlake", "Paris_Hilton"]


def rotate_full(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise about the centre, enlarging the canvas so nothing is cut."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[:, 2] += (nw - w) / 2, (nh - h) / 2
    return cv2.warpAffine(img, m, (nw, nh), borderValue=(128, 128, 128))


def face_free_images(photo: np.ndarray) -> dict[str, np.ndarray]:
    """Synthetic images with no face, plus a face-free crop of a photo's background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    gradient = np.stack([xx / 640 * 255, yy / 480 * 255, (xx + yy) / 1120 * 255], -1)
    blobs = cv2.GaussianBlur(rng.uniform(0, 255, (480, 640, 3)).astype(np.float32), (0, 0), 8)
    blobs = cv2.normalize(blobs, None, 0, 255, cv2.NORM_MINMAX)
    return {
        "noise (uniform 640x480)": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "gradient 640x480": gradient.astype(np.uint8),
        "blurred noise 640x480": blobs.astype(np.uint8),
        "00.jpg background (lower 40%)": np.ascontiguousarray(photo[int(0.6 * photo.shape[0]):]),
    }


def timed(det: MTCNNDetector, img: np.ndarray, runs: int) -> tuple[np.ndarray, float, float]:
    """Faces at conf_threshold 0, and the best wall and process-CPU ms over `runs` runs.
    CPU time is the steadier figure on a shared machine (with 1 thread it is the compute)."""
    det.detect(img)  # warm-up
    wall = cpu = math.inf
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        faces = det.detect(img, conf_threshold=0.0)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return faces, wall * 1000, cpu * 1000


def alignment_error(points: np.ndarray) -> tuple[float, float, float, float]:
    """(rotation deg, |scale - 1| %, shift of the crop centre px, mean point-template distance px)."""
    m, _ = cv2.estimateAffinePartial2D(points, TEMPLATE_512, method=cv2.LMEDS)
    rotation = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    scale = math.hypot(m[0, 0], m[1, 0])
    shift = np.linalg.norm(m @ np.array([256.0, 256.0, 1.0]) - 256.0)
    distance = np.linalg.norm(points - TEMPLATE_512, axis=1).mean()
    return rotation, abs(scale - 1) * 100, float(shift), float(distance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    det = MTCNNDetector()
    conf = inspect.signature(det.detect).parameters["conf_threshold"].default

    photos = {name: cv2.imread(str(args.data / "photos" / name)) for name in PHOTOS}
    crops = {name: cv2.imread(str(args.data / "aligned" / f"{name}_crop.png")) for name in CROPS}
    cases: list[tuple[str, np.ndarray, int]] = [(n, im, PHOTOS[n]) for n, im in photos.items()]
    cases += [(f"{n}_crop.png", im, 1) for n, im in crops.items()]
    small = cv2.resize(photos["10045.png"], None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    cases.append(("small: 10045 x0.3", small, 3))
    cases.append(("rot30: Blake_Lively rotated 30°", rotate_full(photos["Blake_Lively.jpg"], 30), 2))
    cases.append(("rot30: Adele crop rotated 30°", rotate_full(crops["Adele"], 30), 1))
    cases += [(n, im, 0) for n, im in face_free_images(photos["00.jpg"]).items()]

    print(f"conf_threshold = {conf}, torch threads = {args.threads}, best of {args.runs} runs\n")
    print("| image | size (w x h) | expected | found | lowest face score | best score (any) | ms | CPU ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, img, expected in cases:
        faces, ms, cpu_ms = timed(det, img, args.runs)
        found = faces[faces[:, 4] >= conf]
        low = f"{found[:, 4].min():.4f}" if len(found) else "-"
        best = f"{faces[:, 4].max():.4f}" if len(faces) else "-"
        flag = "" if len(found) == expected else " **!**"
        print(f"| {name} | {img.shape[1]}x{img.shape[0]} | {expected} | {len(found)}{flag} | {low} | {best} "
              f"| {ms:.0f} | {cpu_ms:.0f} |")

    print("\n| aligned crop | rotation ° | scale error % | centre shift px | mean point distance px |")
    print("|---|---|---|---|---|")
    rows = []
    for name, img in crops.items():
        faces = det.detect(img, conf_threshold=conf)
        if len(faces) == 0:
            print(f"| {name} | no face found | | | |")
            continue
        rows.append(alignment_error(faces[0, 5:15].reshape(5, 2)))
        rot, scale, shift, dist = rows[-1]
        print(f"| {name} | {rot:+.2f} | {scale:.2f} | {shift:.2f} | {dist:.2f} |")
    arr = np.abs(np.array(rows))
    cells = (f"{m:.2f} ({x:.2f})" for m, x in zip(arr.mean(0), arr.max(0), strict=True))
    print("| mean (max) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
