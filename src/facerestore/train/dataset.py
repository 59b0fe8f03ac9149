"""Training data: aligned faces degraded on the fly (``FFHQDegradationDataset``), paired validation
folders, the sampler and the data-loader worker seeding.

Randomness. The official dataset draws from each worker's global generators (seeded once per
worker and rank), so the order in which workers pick samples decides what degradation a face gets
and a resumed run cannot replay it. Here, by default (``seed_per_sample``), each sample seeds the
same global generators from (manual_seed, epoch, position in the epoch) just for its own draws and
puts the previous states back: the same official draw sequence per sample, independent of the
number of workers or ranks, exactly reproducible after a resume, and the training RNG untouched
when loading runs in the main process.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import degradations as deg

IMG_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Boxes for faces aligned to facexlib's 512 FFHQ template: eye/mouth centres from its 5 points,
# typical half lengths (x, y, half_len, as in the landmark file). Used with component_path: template.
TEMPLATE_COMPONENTS_512 = {"left_eye": (193.0, 240.0, 20.0), "right_eye": (319.0, 240.0, 20.0),
                           "mouth": (257.0, 371.0, 48.0)}


@dataclass
class FFHQDataConfig:
    """``datasets.train`` of the official option files (same keys, same meaning)."""
    dataroot_gt: str = "datasets/ffhq/ffhq_512"
    name: str = "FFHQ"
    type: str = "FFHQDegradationDataset"
    io_backend: dict = field(default_factory=lambda: {"type": "disk"})
    use_hflip: bool = True
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    out_size: int = 512
    blur_kernel_size: int = 41
    kernel_list: Sequence[str] = ("iso", "aniso")
    kernel_prob: Sequence[float] = (0.5, 0.5)
    blur_sigma: Sequence[float] = (0.1, 10)
    downsample_range: Sequence[float] = (0.8, 8)
    noise_range: Sequence[float] | None = (0, 20)
    jpeg_range: Sequence[float] | None = (60, 100)
    color_jitter_prob: float | None = None
    color_jitter_shift: float = 20
    color_jitter_pt_prob: float | None = None
    brightness: Sequence[float] = (0.5, 1.5)
    contrast: Sequence[float] = (0.5, 1.5)
    saturation: Sequence[float] = (0, 1.5)
    hue: Sequence[float] = (-0.1, 0.1)
    gray_prob: float | None = None
    gt_gray: bool = False
    crop_components: bool = False
    # the official FFHQ_eye_mouth_landmarks_512.pth, or "template" (facerestore): the same boxes for
    # every face, from the FFHQ alignment template; fine for aligned faces and for tests
    component_path: str | None = None
    eye_enlarge_ratio: float = 1
    use_shuffle: bool = True
    num_worker_per_gpu: int = 0
    batch_size_per_gpu: int = 3
    dataset_enlarge_ratio: int = 1
    prefetch_mode: str | None = None
    seed_per_sample: bool = True  # facerestore: see the module docstring


# ----------------------------------------------------------------------------- reading images


def scan_images(folder: str | Path) -> list[str]:
    """Image files directly in ``folder``, sorted by name (the official code takes os.scandir order,
    which is arbitrary; sorted names keep FFHQ's 00000.png index = landmark key)."""
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in IMG_EXTS and p.is_file())


class _Lmdb:
    """BasicSR's LMDB layout: ``meta_info.txt`` lines ``<key>.png (h,w,c) level``; values = encoded bytes."""

    def __init__(self, root: str):
        self.root = root
        self.env = None
        with open(os.path.join(root, "meta_info.txt")) as f:
            self.keys = [line.split(".")[0] for line in f if line.strip()]

    def get(self, key: str) -> bytes:
        if self.env is None:  # opened lazily: an lmdb handle must not cross a fork
            import lmdb  # optional dependency (facerestore[train])
            self.env = lmdb.open(self.root, readonly=True, lock=False, readahead=False, meminit=False)
        with self.env.begin(write=False) as txn:
            value = txn.get(key.encode("ascii"))
        if value is None:
            raise KeyError(f"{self.root}: no key {key!r} (listed in meta_info.txt)")
        return bytes(value)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded bytes -> float32 BGR (H, W, 3) in [0, 1] (as BasicSR's imfrombytes)."""
    if not data:
        raise ValueError(f"{where}: empty file, not an image")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ValueError(f"{where}: not a readable image ({e.err})") from None
    if img is None:
        raise ValueError(f"{where}: not a readable image")
    return img.astype(np.float32) / 255.0


def img2tensor(img: np.ndarray) -> torch.Tensor:
    """BGR (H, W, 3) float -> RGB (3, H, W) float32 tensor."""
    return torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()).float()


def normalize_(t: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=t.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=t.dtype).view(-1, 1, 1)
    return t.sub_(m).div_(s)


# ----------------------------------------------------------------------------- landmarks


def load_component_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The official ``FFHQ_eye_mouth_landmarks_512.pth``: ``{'00000000': {'left_eye': [x, y, half_len],
    'right_eye': ..., 'mouth': ...}}`` (numpy float64 scalars), read with ``weights_only=True`` and
    only numpy's scalar/array reconstructors allowed."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # saved by numpy 1 or 2
        allowed += [(multiarray.scalar, f"{mod}.scalar"), (multiarray._reconstruct, f"{mod}._reconstruct")]
    allowed += [(getattr(np.dtypes, n), f"numpy.dtypes.{n}") for n in ("Float64DType", "Float32DType", "Int64DType")]
    with torch.serialization.safe_globals(allowed):
        data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a facial-component file (expected a dict keyed '00000000', ...)")
    return data


def component_locations(box: dict[str, Sequence[float]], hflip: bool, size: int, eye_enlarge_ratio: float,
                        scale: float = 1.0) -> list[torch.Tensor]:
    """Boxes (x1, y1, x2, y2) for left eye, right eye, mouth, as the official
    ``get_component_coordinates``: on a flipped face the eyes swap and x -> size - x; box =
    [centre - half + 1, centre + half] with the eyes' half length times ``eye_enlarge_ratio``.
    ``scale`` maps the 512-px landmark file to other sizes (1 at 512, the official case).
    Unlike the official code this does not modify the loaded landmarks in place (there, every flip
    of a face permanently swapped its stored eyes)."""
    parts = {k: [float(v) * scale for v in box[k]] for k in ("left_eye", "right_eye", "mouth")}
    if hflip:
        parts["left_eye"], parts["right_eye"] = parts["right_eye"], parts["left_eye"]
        for p in parts.values():
            p[0] = size - p[0]
    locations = []
    for part in ("left_eye", "right_eye", "mouth"):
        mean = np.array(parts[part][:2], dtype=np.float64)
        half = parts[part][2] * (eye_enlarge_ratio if "eye" in part else 1)
        locations.append(torch.from_numpy(np.hstack((mean - half + 1, mean + half))).float())
    return locations


# ----------------------------------------------------------------------------- seeding


@contextlib.contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Seed python ``random``, ``np.random`` and torch's CPU RNG for a block; restore them after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def sample_seed(base: int, epoch: int, position: int) -> int:
    """A distinct, well-mixed 63-bit seed per (run seed, epoch, position in the epoch's order)."""
    return int(np.random.SeedSequence([base, epoch, position]).generate_state(2, np.uint32).astype(np.uint64)
               .dot([1, 2**32]) % 2**63)


def worker_init_fn(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    """BasicSR's worker seeding: numpy and python RNGs = seed + num_workers * rank + worker_id
    (torch's per-worker seed comes from the DataLoader's generator)."""
    worker_seed = num_workers * rank + worker_id + seed
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class EpochSampler(Sampler):
    """BasicSR's ``EnlargedSampler`` (a DistributedSampler over ``dataset_enlarge_ratio`` copies of
    the dataset): the epoch's order is ``randperm(total, seed + epoch)``, rank r takes every
    ``num_replicas``-th index from r. Yields ``(index, sample_seed)`` pairs. ``start`` skips the first
    samples of the current epoch (resume in the middle of an epoch)."""

    def __init__(self, dataset_len: int, num_replicas: int = 1, rank: int = 0, ratio: int = 1, shuffle: bool = True,
                 seed: int = 0):
        self.dataset_len, self.num_replicas, self.rank, self.shuffle, self.seed = (
            dataset_len, num_replicas, rank, shuffle, seed)
        self.num_samples = math.ceil(dataset_len * ratio / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.total_size, generator=g).tolist()
        else:
            order = list(range(self.total_size))
        for pos in range(self.rank + self.start * self.num_replicas, self.total_size, self.num_replicas):
            yield order[pos] % self.dataset_len, sample_seed(self.seed, self.epoch, pos)

    def __len__(self) -> int:
        return self.num_samples - self.start


# ----------------------------------------------------------------------------- datasets


class FFHQDegradationDataset(Dataset):
    """Aligned high-quality faces -> (degraded lq, gt, component boxes), as the official dataset.

    ``__getitem__`` takes an index, or ``(index, seed)`` from :class:`EpochSampler`."""

    def __init__(self, cfg: FFHQDataConfig):
        self.cfg = cfg
        backend = dict(cfg.io_backend or {"type": "disk"}).get("type", "disk")
        if backend == "lmdb":
            if not cfg.dataroot_gt.endswith(".lmdb"):
                raise ValueError(f"dataroot_gt should end with '.lmdb' for the lmdb backend, got {cfg.dataroot_gt}")
            self.lmdb: _Lmdb | None = _Lmdb(cfg.dataroot_gt)
            self.paths = self.lmdb.keys
        elif backend == "disk":
            self.lmdb = None
            self.paths = scan_images(cfg.dataroot_gt)
        else:
            raise ValueError(f"io_backend type {backend!r}: use 'disk' or 'lmdb'")
        if not self.paths:
            raise ValueError(f"{cfg.dataroot_gt}: no images found")
        self.components: dict | None = None
        if cfg.crop_components:
            if cfg.component_path in (None, "template"):
                self.components = None  # template boxes for every face
            else:
                self.components = load_component_file(cfg.component_path)
        self.color_jitter_shift = cfg.color_jitter_shift / 255.0

    def __len__(self) -> int:
        return len(self.paths)

    def read_gt(self, index: int) -> np.ndarray:
        """The ground-truth image at ``index`` (float32 BGR in [0, 1]); ValueError naming a broken file."""
        path = self.paths[index]
        if self.lmdb is not None:
            return decode_image(self.lmdb.get(path), f"{self.cfg.dataroot_gt}:{path}")
        with open(path, "rb") as f:
            return decode_image(f.read(), path)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, (tuple, list)):
            index, seed = int(item[0]), int(item[1])
            with seeded_globals(seed):
                return self.make_sample(index)
        return self.make_sample(int(item))

    def _boxes(self, index: int, hflip: bool) -> list[torch.Tensor]:
        size = self.cfg.out_size
        if self.components is None:
            return component_locations(TEMPLATE_COMPONENTS_512, hflip, size, self.cfg.eye_enlarge_ratio, size / 512)
        return component_locations(self.components[f"{index:08d}"], hflip, size, self.cfg.eye_enlarge_ratio,
                                   size / 512)

    def make_sample(self, index: int) -> dict[str, Any]:
        """One sample with the official sequence of random draws (global RNGs)."""
        cfg = self.cfg
        img_gt = self.read_gt(index)
        if img_gt.shape[:2] != (cfg.out_size, cfg.out_size):  # facerestore: any aligned-face size is resized
            img_gt = cv2.resize(img_gt, (cfg.out_size, cfg.out_size), interpolation=cv2.INTER_AREA)
        hflip = bool(cfg.use_hflip) and random.random() < 0.5
        if hflip:
            img_gt = np.ascontiguousarray(img_gt[:, ::-1])
        h, w, _ = img_gt.shape
        boxes = self._boxes(index, hflip) if cfg.crop_components else None

        # blur -> downsample -> noise -> JPEG -> back to full size (the paper's Eq. 9)
        kernel = deg.random_mixed_kernels(cfg.kernel_list, cfg.kernel_prob, cfg.blur_kernel_size, cfg.blur_sigma,
                                          cfg.blur_sigma, [-math.pi, math.pi])
        img_lq = cv2.filter2D(img_gt, -1, kernel)
        scale = np.random.uniform(cfg.downsample_range[0], cfg.downsample_range[1])
        img_lq = cv2.resize(img_lq, (int(w // scale), int(h // scale)), interpolation=cv2.INTER_LINEAR)
        if cfg.noise_range is not None:
            img_lq = deg.random_add_gaussian_noise(img_lq, cfg.noise_range)
        if cfg.jpeg_range is not None:
            img_lq = deg.random_add_jpg_compression(img_lq, cfg.jpeg_range)
        img_lq = cv2.resize(img_lq, (w, h), interpolation=cv2.INTER_LINEAR)

        # colour (lq only), grey (lq, and gt with gt_gray)
        if cfg.color_jitter_prob is not None and np.random.uniform() < cfg.color_jitter_prob:
            img_lq = deg.color_jitter(img_lq, self.color_jitter_shift)
        if cfg.gray_prob and np.random.uniform() < cfg.gray_prob:
            img_lq = deg.to_gray3(img_lq)
            if cfg.gt_gray:
                img_gt = deg.to_gray3(img_gt)

        gt, lq = img2tensor(img_gt), img2tensor(img_lq)
        if cfg.color_jitter_pt_prob is not None and np.random.uniform() < cfg.color_jitter_pt_prob:
            lq = deg.color_jitter_pt(lq, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        lq = torch.clamp((lq * 255.0).round(), 0, 255) / 255.0  # as saved to 8 bit
        normalize_(gt, cfg.mean, cfg.std)
        normalize_(lq, cfg.mean, cfg.std)
        out: dict[str, Any] = {"lq": lq, "gt": gt, "gt_path": self.paths[index]}
        if boxes is not None:
            out.update(loc_left_eye=boxes[0], loc_right_eye=boxes[1], loc_mouth=boxes[2])
        return out


class PairedImageDataset(Dataset):
    """Validation pairs: files with the same name in ``dataroot_lq`` and ``dataroot_gt`` (the official
    ``PairedImageDataset`` with scale 1), normalised like the training data."""

    def __init__(self, dataroot_lq: str, dataroot_gt: str, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), size: int | None = None):
        self.mean, self.std, self.size = mean, std, size
        gts = {Path(p).stem: p for p in scan_images(dataroot_gt)}
        self.pairs = [(p, gts[Path(p).stem]) for p in scan_images(dataroot_lq) if Path(p).stem in gts]
        if not self.pairs:
            raise ValueError(f"no image in {dataroot_lq} has a same-named ground truth in {dataroot_gt}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        lq_path, gt_path = self.pairs[i]
        out: dict[str, Any] = {"lq_path": lq_path, "gt_path": gt_path}
        for key, path in (("lq", lq_path), ("gt", gt_path)):
            with open(path, "rb") as f:
                img = decode_image(f.read(), path)
            if self.size and img.shape[:2] != (self.size, self.size):
                img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[key] = normalize_(img2tensor(img), self.mean, self.std)
        return out


def save_component_file(boxes: dict[str, dict[str, Sequence[float]]], path: str | Path) -> None:
    """Write boxes in the official landmark-file layout (numpy float64 values, as the official
    scripts/parse_landmark.py writes them and as the official dataset's arithmetic expects)."""
    torch.save({k: {p: [np.float64(x) for x in v] for p, v in d.items()} for k, d in boxes.items()}, path)
