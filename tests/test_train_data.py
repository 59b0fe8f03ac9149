"""Training data: degradation kernels, noise/JPEG/colour, the FFHQ-style dataset and its seeding."""
import random

import cv2
import numpy as np
import pytest
import torch

from facerestore.train import degradations as deg
from facerestore.train.dataset import (
    EpochSampler,
    FFHQDataConfig,
    FFHQDegradationDataset,
    component_locations,
    load_component_file,
    save_component_file,
    seeded_globals,
)


def make_faces(folder, n=3, size=64):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    return folder


def tiny_cfg(root, **kw):
    base = dict(dataroot_gt=str(root), out_size=64, blur_kernel_size=7, blur_sigma=[0.1, 3], downsample_range=[1, 4],
                crop_components=True, component_path="template", eye_enlarge_ratio=1.4, color_jitter_prob=0.3,
                color_jitter_pt_prob=0.3, gray_prob=0.01)
    base.update(kw)
    return FFHQDataConfig(**base)


def test_kernels_are_normalised_and_shaped():
    np.random.seed(0)
    random.seed(0)
    for _ in range(10):
        k = deg.random_mixed_kernels(["iso", "aniso"], [0.5, 0.5], 21, [0.1, 10], [0.1, 10])
        assert k.shape == (21, 21)
        assert abs(k.sum() - 1) < 1e-12 and (k >= 0).all()
    iso = deg.bivariate_gaussian(9, 2.0, 5.0, 1.0, isotropic=True)
    assert np.allclose(iso, iso.T) and np.allclose(iso, iso[::-1])  # sig_y and theta ignored
    aniso = deg.bivariate_gaussian(15, 1.0, 4.0, 0.0, isotropic=False)
    assert aniso[7, 0] < aniso[0, 7]  # sig_x=1 blurs less along x than sig_y=4 along y
    rotated = deg.bivariate_gaussian(15, 1.0, 4.0, np.pi / 2, isotropic=False)
    assert np.allclose(rotated, aniso.T)
    with pytest.raises(ValueError, match="iso"):
        deg.random_mixed_kernels(["plateau_iso"], [1.0], 21)


def test_kernel_draws_follow_the_official_order():
    """iso draws one sigma, aniso draws sigma_x, sigma_y, rotation, all from np.random."""
    np.random.seed(3)
    random.seed(3)
    k = deg.random_mixed_kernels(["aniso"], [1.0], 11, [0.5, 4], [0.5, 4])
    np.random.seed(3)
    sx, sy, th = np.random.uniform(0.5, 4), np.random.uniform(0.5, 4), np.random.uniform(-np.pi, np.pi)
    assert np.allclose(k, deg.bivariate_gaussian(11, sx, sy, th, isotropic=False))


def test_noise_jpeg_colour():
    img = np.full((16, 16, 3), 0.5, np.float32)
    np.random.seed(0)
    noisy = deg.random_add_gaussian_noise(img, [10, 10])
    assert noisy.dtype == np.float32 and 0.01 < np.std(noisy - img) < 0.06
    grey_noise = deg.add_gaussian_noise(img, 10, gray_noise=True)
    assert np.array_equal(grey_noise[..., 0], grey_noise[..., 2])
    j = deg.add_jpg_compression(np.random.rand(16, 16, 3).astype(np.float32), 70.9)
    assert j.shape == (16, 16, 3) and j.dtype == np.float32 and j.max() <= 1
    t = torch.rand(3, 8, 8)
    assert torch.allclose(deg.adjust_hue(t, 0.0), t, atol=1e-6)  # HSV round trip
    assert torch.allclose(deg.adjust_brightness(t, 1.0), t)
    grey = deg.adjust_saturation(t, 0.0)
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    pure_red = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
    assert torch.allclose(deg.adjust_hue(pure_red, 1 / 3), torch.tensor([0, 1.0, 0]).view(3, 1, 1), atol=1e-6)


def test_dataset_sample_is_deterministic_and_isolated(tmp_path):
    ds = FFHQDegradationDataset(tiny_cfg(make_faces(tmp_path / "faces")))
    torch.manual_seed(123)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    a, b, c = ds[(1, 7)], ds[(1, 7)], ds[(1, 8)]
    assert torch.equal(a["lq"], b["lq"]) and not torch.equal(a["lq"], c["lq"])
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
    assert a["lq"].shape == a["gt"].shape == (3, 64, 64)
    assert a["gt"].min() >= -1 and a["gt"].max() <= 1
    assert torch.equal(((a["lq"] + 1) / 2 * 255).round(), (a["lq"] + 1) / 2 * 255)  # 8-bit levels


def test_gray_prob_and_gt_gray(tmp_path):
    root = make_faces(tmp_path / "faces")
    s = FFHQDegradationDataset(tiny_cfg(root, gray_prob=1.0, color_jitter_pt_prob=None))[(0, 1)]
    assert torch.equal(s["lq"][0], s["lq"][1]) and not torch.equal(s["gt"][0], s["gt"][1])
    s = FFHQDegradationDataset(tiny_cfg(root, gray_prob=1.0, gt_gray=True, color_jitter_pt_prob=None))[(0, 1)]
    assert torch.equal(s["gt"][0], s["gt"][2])


def test_component_boxes_flip_and_landmark_file(tmp_path):
    box = {"left_eye": [190.0, 240.0, 20.0], "right_eye": [320.0, 242.0, 22.0], "mouth": [256.0, 370.0, 48.0]}
    le, re, mo = component_locations(box, False, 512, 1.4)
    assert torch.allclose(le, torch.tensor([190 - 28 + 1, 240 - 28 + 1, 190 + 28, 240 + 28.0]))
    assert torch.allclose(mo, torch.tensor([256 - 47.0, 370 - 47, 256 + 48, 370 + 48]))
    fle, fre, fmo = component_locations(box, True, 512, 1.4)
    # flipped: the right eye becomes the left one, mirrored about x = size
    assert torch.allclose(fle, torch.tensor([512 - 320 - 22 * 1.4 + 1, 242 - 22 * 1.4 + 1, 512 - 320 + 22 * 1.4,
                                             242 + 22 * 1.4]))
    assert torch.allclose(fmo[1::2], mo[1::2]) and box["left_eye"][0] == 190.0  # input not modified
    path = tmp_path / "lm.pth"
    torch.save({"00000000": {k: [np.float64(v) for v in b] for k, b in box.items()}}, path)  # official layout
    assert load_component_file(path)["00000000"]["mouth"][2] == 48.0
    save_component_file({"00000000": box}, tmp_path / "lm2.pth")
    assert load_component_file(tmp_path / "lm2.pth")["00000000"]["left_eye"] == box["left_eye"]


def test_dataset_reads_landmark_file_per_index(tmp_path):
    root = make_faces(tmp_path / "faces", n=2)
    boxes = {f"{i:08d}": {"left_eye": [20.0 + i, 30, 4], "right_eye": [44.0, 30, 4], "mouth": [32.0, 48, 8]}
             for i in range(2)}
    save_component_file(boxes, tmp_path / "lm.pth")
    ds = FFHQDegradationDataset(tiny_cfg(root, component_path=str(tmp_path / "lm.pth"), use_hflip=False,
                                         eye_enlarge_ratio=1, out_size=512))
    s = ds[(1, 0)]
    assert torch.allclose(s["loc_left_eye"], torch.tensor([18.0, 27, 25, 34]))


def test_sampler_shards_ranks_and_resumes():
    full = list(EpochSampler(10, 1, 0, seed=3))
    r0, r1 = list(EpochSampler(10, 2, 0, seed=3)), list(EpochSampler(10, 2, 1, seed=3))
    assert sorted(i for i, _ in r0 + r1) == list(range(10))
    assert {s for _, s in r0}.isdisjoint({s for _, s in r1})
    assert {s for _, s in r0 + r1} == {s for _, s in full}  # a sample's seed does not depend on the world size
    s = EpochSampler(10, 1, 0, seed=3)
    s.set_epoch(0, start=4)
    assert list(s) == full[4:] and len(s) == 6
    s.set_epoch(1)
    assert list(s) != full


def test_workers_give_the_same_batches(tmp_path):
    ds = FFHQDegradationDataset(tiny_cfg(make_faces(tmp_path / "faces", n=4)))
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=EpochSampler(4, seed=1), num_workers=workers)
        batches.append([b["lq"] for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


def test_lmdb_backend(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    root = make_faces(tmp_path / "faces", n=2)
    db = tmp_path / "faces.lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn, open(db / "meta_info.txt", "w") as meta:
        for p in sorted(root.iterdir()):
            txn.put(p.stem.encode(), p.read_bytes())
            meta.write(f"{p.name} (64,64,3) 1\n")
    env.close()
    a = FFHQDegradationDataset(tiny_cfg(db, io_backend={"type": "lmdb"}))[(1, 2)]
    b = FFHQDegradationDataset(tiny_cfg(root))[(1, 2)]
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])


def test_seeded_globals_restores_states():
    torch.manual_seed(0)
    x = torch.rand(1)
    torch.manual_seed(0)
    with seeded_globals(5):
        torch.rand(3)
        np.random.rand()
    assert torch.equal(torch.rand(1), x)
