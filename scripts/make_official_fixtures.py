"""Write tests/fixtures/official/: small outputs of the *official* code for the test suite.

The README's "same pixels" figures are measured by ``benchmarks/check_equivalence.py`` against
the reference kit's 2.3 GiB golden files, by hand. This script keeps a slice of them in the
repository so that ``tests/test_official_fixtures.py`` fails on any drift from the official
pixels without the kit: seeded, reduced-size official models (checkpoints in the release
layout), their inputs and the official outputs, plus the face crop / paste geometry of facexlib's
``FaceRestoreHelper`` and ``GFPGANer.enhance`` on a downscaled photo with given landmarks.

Run it with the reference kit's venv (it imports the official code through the kit)::

    /tmp/refenv/bin/python scripts/make_official_fixtures.py

It is deterministic: one torch thread, fixed seeds, and ``torch.save`` / PNG / gzip writers that
give the same bytes on a re-run (the script prints the sha256 of every file).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import lzma
import math
import os
import sys
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KIT = ROOT.parent / "shared" / "reference"
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "photos" / "Blake_Lively.jpg"
OUT = ROOT / "tests" / "fixtures" / "official"

WEIGHT_SEED = 0
# The kit's hand-placed landmarks for Blake_Lively.jpg (RetinaFace order), at full size. The
# fixture photo is that image at 1/5 size, so they are scaled by 1/5.
BLAKE_LANDMARKS = [
    [[150.7, 180.0], [215.0, 203.3], [170.0, 229.0], [132.7, 245.0], [180.0, 260.0]],
    [[465.0, 159.3], [548.3, 175.0], [499.3, 213.3], [455.0, 237.3], [532.7, 254.0]],
]
PHOTO_SCALE = 0.2

# Reduced-size models: (official module, class, kwargs, checkpoint layout). Sizes are picked so
# that every checkpoint is a few tens of KB and facerestore's detection reads the same kwargs.
GFPGAN_SMALL = dict(out_size=64, num_style_feat=16, decoder_load_path=None, num_mlp=2, input_is_latent=True,
                    different_w=True, narrow=1 / 64, sft_half=True)
MODELS = OrderedDict([
    ("GFPGANv1Clean", ("gfpgan.archs.gfpganv1_clean_arch", "GFPGANv1Clean",
                       dict(GFPGAN_SMALL, channel_multiplier=2, fix_decoder=False), "params_ema")),
    # The paper model: channel_multiplier=1 (what tells it from GFPGANBilinear), fused ops.
    ("GFPGANv1", ("gfpgan.archs.gfpganv1_arch", "GFPGANv1",
                  dict(GFPGAN_SMALL, out_size=32, channel_multiplier=1, fix_decoder=True), "params_ema")),
    ("GFPGANBilinear", ("gfpgan.archs.gfpgan_bilinear_arch", "GFPGANBilinear",
                        dict(GFPGAN_SMALL, channel_multiplier=2, fix_decoder=False), "params_ema")),
    # StyleGAN2 decoders on their own, with the style MLP (NormStyleCode) that GFPGAN skips
    # (input_is_latent=True). No detection rule: the test builds them from these kwargs.
    ("StyleGAN2GeneratorClean", ("gfpgan.archs.stylegan2_clean_arch", "StyleGAN2GeneratorClean",
                                 dict(out_size=16, num_style_feat=16, num_mlp=2, channel_multiplier=2, narrow=1 / 32),
                                 "params_ema")),
    ("StyleGAN2Generator", ("basicsr.archs.stylegan2_arch", "StyleGAN2Generator",
                            dict(out_size=16, num_style_feat=16, num_mlp=2, channel_multiplier=2,
                                 resample_kernel=(1, 3, 3, 1), lr_mlp=0.01, narrow=1 / 32), "params_ema")),
    ("RestoreFormer", ("gfpgan.archs.restoreformer_arch", "RestoreFormer",
                       dict(n_embed=16, embed_dim=8, ch=32, out_ch=3, ch_mult=(1,), num_res_blocks=1,
                            attn_resolutions=(512,), dropout=0.0, in_channels=3, resolution=512, z_channels=8,
                            double_z=False, enable_mid=True, head_size=8), "params_ema")),
    ("RRDBNet_x2", ("basicsr.archs.rrdbnet_arch", "RRDBNet",
                    dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1, num_grow_ch=4), "params_ema")),
    ("RRDBNet_x4", ("basicsr.archs.rrdbnet_arch", "RRDBNet",
                    dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4), "params_ema")),
    # in_size=512 as FaceRestoreHelper feeds it (4 down steps), but 4..16 channels and one body block.
    ("ParseNet", ("facexlib.parsing.parsenet", "ParseNet",
                  dict(in_size=512, out_size=512, min_feat_size=32, base_ch=4, parsing_ch=19, res_depth=1,
                       relu_type="LeakyReLU", norm_type="bn", ch_range=[4, 8]), "raw")),
    ("StyleGAN2Discriminator", ("basicsr.archs.stylegan2_arch", "StyleGAN2Discriminator",
                                dict(out_size=32, channel_multiplier=1, resample_kernel=(1, 3, 3, 1), stddev_group=4,
                                     narrow=1 / 32), "params")),
    # The face network of the end-to-end case: 512 px (the pipeline's face size) but 1..16
    # channels. Its StyleGAN noise buffers (2.8 MB) are set to zero so that the checkpoint
    # gzips to a few KB; noise is covered by the 64-px cases above.
    ("GFPGANv1Clean_512", ("gfpgan.archs.gfpganv1_clean_arch", "GFPGANv1Clean",
                           dict(out_size=512, num_style_feat=8, channel_multiplier=4, decoder_load_path=None,
                                fix_decoder=False, num_mlp=1, input_is_latent=True, different_w=True, narrow=1 / 64,
                                sft_half=True), "params_ema")),
])


def _coarse(key: str, t: torch.Tensor) -> torch.Tensor:
    """The same weights on a coarse grid, kept in float32, so the compressed checkpoints are small.

    Each tensor becomes k * 2**e with integers k in [-16, 15] and one power of two e per tensor
    (chosen from its largest value); BatchNorm statistics only lose their low 16 bits (a running
    variance must not round to 0). The official outputs are computed with exactly these float32
    values, so nothing is lost in the comparison; every arithmetic step is still fp32.
    """
    if key.endswith(("running_mean", "running_var")):
        return t.to(torch.bfloat16).float()
    peak = float(t.abs().max())
    if peak == 0:
        return t
    step = 2.0 ** math.ceil(math.log2(peak / 15))
    return torch.clamp(torch.round(t / step), -16, 15) * step


def _seeded_u8(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def signed(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1] (the test uses the same expression)."""
    return x_u8.float() / 127.5 - 1


def unit(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (the test uses the same expression)."""
    return x_u8.float() / 255


def _style_codes(batch: int, dim: int, seed: int) -> torch.Tensor:
    """Style codes whose rows have very different norms: NormStyleCode's epsilon (1e-8) matters
    only for small ones, so row 1 has mean square ~1e-6 (an epsilon of 1e-3 would change it 30×)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, dim, generator=g)
    z[1:] *= 1e-3
    return z


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _array_sha(a: np.ndarray) -> str:
    """sha256 of an image's raw bytes (the test compares uint8 arrays exactly through this)."""
    return _sha(np.ascontiguousarray(a).tobytes())


def _grid(a: np.ndarray, step: int = 8) -> np.ndarray:
    """Every `step`-th pixel: lets a failing exact comparison say how far and where."""
    return np.ascontiguousarray(a[step // 2::step, step // 2::step])


def _save_pt(obj, path: Path, compress: bool = False) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    if compress:  # xz: same bytes for the same input, and ~2x smaller than gzip on these weights
        data = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(data)


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    path.write_bytes(buf.tobytes())


def _checkpoint(model, layout: str):
    sd = OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())
    return sd if layout == "raw" else {layout: sd}


class Maker:
    def __init__(self, kit: Path, out: Path, photo: Path):
        sys.path.insert(0, str(kit))
        import official  # noqa: E402  (the kit: makes the official code importable on CPU)

        self.official = official
        official.setup()
        self.out = out
        self.photo = photo
        self.models: dict[str, torch.nn.Module] = {}
        self.manifest: OrderedDict = OrderedDict(
            format="facerestore-official-fixtures/1",
            command="/tmp/refenv/bin/python scripts/make_official_fixtures.py",
            sources=OrderedDict(),
            environment=OrderedDict(torch=torch.__version__, numpy=np.__version__, opencv=cv2.__version__,
                                    threads=torch.get_num_threads()),
            weights=OrderedDict(seed=WEIGHT_SEED, rule=(
                "torch.manual_seed(seed); official constructor (default init); kit official.perturb(model, seed): "
                "+0.02*N(0,1) on every floating state_dict entry; ParseNet: BatchNorm statistics re-estimated by "
                "official.calibrate_bn on official.calibration_batch('face512'); eval()")),
            cases=OrderedDict(), face_helper=None, gfpganer=None, files=OrderedDict())
        for repo in ("GFPGAN", "facexlib", "BasicSR", "Real-ESRGAN"):
            commit_file = Path(official.SRC) / repo / ".reference-commit"
            self.manifest["sources"][repo] = commit_file.read_text().strip() if commit_file.exists() else None

    # ------------------------------------------------------------------ models

    def build(self, name: str) -> torch.nn.Module:
        module, cls_name, kwargs, _ = MODELS[name]
        cls = getattr(self.official._imp(module), cls_name)
        torch.manual_seed(WEIGHT_SEED)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # RestoreFormer prints
            warnings.simplefilter("ignore")
            model = cls(**kwargs)
        self.official.perturb(model, WEIGHT_SEED)
        if name == "ParseNet":
            self.official.calibrate_bn(model, self.official.calibration_batch("face512"))
        with torch.no_grad():
            for key, t in model.state_dict(keep_vars=True).items():
                if not t.is_floating_point():
                    continue
                if name == "GFPGANv1Clean_512" and key.startswith("stylegan_decoder.noises."):
                    t.zero_()
                t.copy_(_coarse(key, t))
        return model.eval()

    def save_checkpoint(self, name: str, model) -> str:
        """The release-layout .pth, xz-compressed (the test unpacks it into a temporary file)."""
        layout = MODELS[name][3]
        file = f"{name}.pth.xz"
        _save_pt(_checkpoint(model, layout), self.out / file, compress=True)
        # The official loader's view of the file: what GFPGANer / init_parsing_model / basicsr do.
        sd = torch.load(io.BytesIO(lzma.decompress((self.out / file).read_bytes())), weights_only=True)
        sd = sd if layout == "raw" else sd[layout]
        fresh = self.build(name)
        fresh.load_state_dict(sd, strict=True)
        fresh_values, model_values = fresh.state_dict().values(), model.state_dict().values()
        assert all(torch.equal(a, b) for a, b in zip(fresh_values, model_values, strict=True))
        return file

    # ------------------------------------------------------------------ network cases

    def cases(self):
        """(name, inputs, [(output name, call text, fn(model, inputs) -> tensor or list)])."""
        # Image inputs are stored as uint8 (a quarter of the bytes) and turned into float32 by the
        # same expressions in the test: x = u8 / 127.5 - 1 (signed) or u8 / 255 (RRDBNet).
        def gfp_case(size, seed):
            return dict(x_u8=_seeded_u8((1, 3, size, size), seed))

        def gfp_calls():
            return [("image", "model(x, return_rgb=False, randomize_noise=False)[0]",
                     lambda m, i: m(signed(i["x_u8"]), return_rgb=False, randomize_noise=False)[0]),
                    ("out_rgbs", "model(x, return_rgb=True, randomize_noise=False)[1][:-1]"
                                 "  # U-Net RGBs below out_size",
                     lambda m, i: m(signed(i["x_u8"]), return_rgb=True, randomize_noise=False)[1][:-1])]

        def gen_calls():
            return [("image", "model([z], input_is_latent=False, randomize_noise=False)[0]  # style MLP runs",
                     lambda m, i: m([i["z"]], input_is_latent=False, randomize_noise=False)[0]),
                    ("image_mixed", "model([z, z2], input_is_latent=False, randomize_noise=False, inject_index=3)[0]",
                     lambda m, i: m([i["z"], i["z2"]], input_is_latent=False, randomize_noise=False,
                                    inject_index=3)[0]),
                    ("latent", "model([w], input_is_latent=True, randomize_noise=False, return_latents=True)[1]",
                     lambda m, i: m([i["w"]], input_is_latent=True, randomize_noise=False, return_latents=True)[1]),
                    ("image_latent", "model([w], input_is_latent=True, randomize_noise=False)[0]",
                     lambda m, i: m([i["w"]], input_is_latent=True, randomize_noise=False)[0])]

        gen_in = dict(z=_style_codes(2, 16, 2), z2=_style_codes(2, 16, 3), w=torch.randn(
            2, 16, generator=torch.Generator().manual_seed(4)))
        face = cv2.imread(str(self.photo.parent.parent / "aligned" / "Adele_crop.png"), cv2.IMREAD_COLOR)
        face = cv2.resize(face, (32, 32), interpolation=cv2.INTER_AREA)
        return [
            ("GFPGANv1Clean", gfp_case(64, 1), gfp_calls()),
            ("GFPGANv1", gfp_case(32, 1), gfp_calls()),
            ("GFPGANBilinear", gfp_case(64, 1), gfp_calls()),
            ("StyleGAN2GeneratorClean", gen_in, gen_calls()),
            ("StyleGAN2Generator", gen_in, gen_calls()),
            ("RestoreFormer", dict(x_u8=_seeded_u8((1, 3, 32, 32), 5)),
             [("image", "model(x)[0]", lambda m, i: m(signed(i["x_u8"]))[0])]),
            ("RRDBNet_x2", dict(x_u8=_seeded_u8((1, 3, 12, 16), 6)),
             [("out", "model(x)", lambda m, i: m(unit(i["x_u8"])))]),
            ("RRDBNet_x4", dict(x_u8=_seeded_u8((1, 3, 8, 12), 7)),
             [("out", "model(x)", lambda m, i: m(unit(i["x_u8"])))]),
            # A real face (aligned/Adele_crop.png at 32 px: the smallest size with a 2x2
            # bottleneck), uint8 BGR; the test turns it into
            # RGB [-1, 1] the same way: x = (face[..., ::-1] / 255 - 0.5) / 0.5 in float32.
            ("ParseNet", dict(face_bgr=torch.from_numpy(face)),
             [("out_mask", "model(x)[0]  # 19 logits", lambda m, i: m(_face_tensor(i["face_bgr"]))[0]),
              ("out_img", "model(x)[1]", lambda m, i: m(_face_tensor(i["face_bgr"]))[1])]),
            ("StyleGAN2Discriminator", dict(x_u8=_seeded_u8((4, 3, 32, 32), 8)),
             [("out", "model(x)  # batch 4 = one minibatch-stddev group", lambda m, i: m(signed(i["x_u8"])))]),
        ]

    def network_cases(self):
        for name, inputs, calls in self.cases():
            model = self.build(name)
            self.models[name] = model
            ckpt = self.save_checkpoint(name, model)
            outputs = OrderedDict()
            with torch.no_grad():
                for out_name, _, fn in calls:
                    y = fn(model, inputs)
                    if isinstance(y, (list, tuple)):
                        outputs.update((f"{out_name}.{k}", t.contiguous()) for k, t in enumerate(y))
                    else:
                        outputs[out_name] = y.contiguous()
            io_file = f"{name}.io.pt"
            _save_pt(OrderedDict([("inputs", OrderedDict(inputs)), ("outputs", outputs)]), self.out / io_file)
            module, cls_name, kwargs, layout = MODELS[name]
            self.manifest["cases"][name] = OrderedDict(
                official=f"{module}.{cls_name}", kwargs=_jsonable(kwargs), layout=layout, checkpoint=ckpt, io=io_file,
                calls=[c for _, c, _ in calls],
                outputs={k: dict(shape=list(v.shape), absmax=float(v.abs().max())) for k, v in outputs.items()})
            print(f"{name}: {sum(p.numel() for p in model.state_dict().values())} numbers, "
                  f"outputs {list(outputs)}", flush=True)

    # ------------------------------------------------------------------ geometry and pipeline

    def photo_and_landmarks(self):
        img = cv2.imread(str(self.photo), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        small = cv2.resize(img, (round(w * PHOTO_SCALE), round(h * PHOTO_SCALE)), interpolation=cv2.INTER_AREA)
        landmarks = [np.array(lm, dtype=np.float32) * np.float32(PHOTO_SCALE) for lm in BLAKE_LANDMARKS]
        return small, landmarks

    @contextlib.contextmanager
    def helper_weights(self):
        """A folder with default-init facexlib checkpoints under their release names: the official
        FaceRestoreHelper loads a detector and a ParseNet at construction (never used here; the
        small ParseNet replaces the parser, and the landmarks are given)."""
        fp = self.official._imp("facexlib.parsing.parsenet")
        rf = self.official._imp("facexlib.detection.retinaface")
        with tempfile.TemporaryDirectory() as d:
            torch.save(fp.ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), f"{d}/parsing_parsenet.pth")
            net = rf.RetinaFace(network_name="mobile0.25", half=False, phase="test", device=torch.device("cpu"))
            torch.save(net.state_dict(), f"{d}/detection_mobilenet0.25_Final.pth")
            yield d

    def helper(self, weights, upscale, use_parse):
        with contextlib.redirect_stdout(io.StringIO()):
            h = self.official.face_helper(upscale, weights, det_model="retinaface_mobile0.25", use_parse=use_parse)
        if use_parse:
            h.face_parse = self.models["ParseNet"]
        return h

    def face_helper_case(self, weights):
        img, landmarks = self.photo_and_landmarks()
        _write_png(self.out / "photo.png", img)
        entry = OrderedDict(photo="photo.png", source=f"../shared/data/photos/{self.photo.name} resized by "
                            f"{PHOTO_SCALE} (cv2.INTER_AREA)", landmarks=[lm.tolist() for lm in landmarks],
                            landmarks_dtype="float32", results=OrderedDict())
        arrays = OrderedDict(landmarks=np.stack(landmarks))
        # ParseNet-masked pastes are covered by the GFPGANer case (same photo, same landmarks).
        for upscale, use_parse in ((1, False), (2, False)):
            h = self.helper(weights, upscale, use_parse)
            h.read_image(img.copy())
            h.all_landmarks_5 = [lm.copy() for lm in landmarks]
            h.align_warp_face()
            crops, affines = np.stack(h.cropped_faces), np.stack(h.affine_matrices)
            for c in h.cropped_faces:
                h.add_restored_face(255 - c)  # a fake restoration that keeps every pixel informative
            h.get_inverse_affine(None)
            inverse = np.stack([m.copy() for m in h.inverse_affine_matrices])  # before the paste edits them
            with torch.no_grad():
                pasted = h.paste_faces_to_input_image()
            tag = f"up{upscale}" + ("_parse" if use_parse else "")
            if "crops_sha256" not in entry:
                entry["crops_sha256"] = [_array_sha(c) for c in crops]
                arrays["affines"] = affines
                arrays["crops_grid8"] = np.stack([_grid(c) for c in crops])
            else:
                assert [_array_sha(c) for c in crops] == entry["crops_sha256"]
            arrays[f"inverse_affines_{tag}"] = inverse
            _write_png(self.out / f"paste_{tag}.png", pasted)
            entry["results"][tag] = OrderedDict(
                upscale=upscale, use_parse=use_parse, png=f"paste_{tag}.png", shape=list(pasted.shape),
                call="FaceRestoreHelper(upscale, face_size=512); read_image; all_landmarks_5 = landmarks; "
                     "align_warp_face(); add_restored_face(255 - crop); get_inverse_affine(None); "
                     "paste_faces_to_input_image()"
                     + ("  # face_parse = the ParseNet case's model" if use_parse else ""))
        np.savez_compressed(self.out / "face_helper.npz", **arrays)
        entry["arrays"] = "face_helper.npz"
        self.manifest["face_helper"] = entry

    def gfpganer_case(self, weights):
        gu = self.official._imp("gfpgan.utils")
        img, landmarks = self.photo_and_landmarks()
        net = self.build("GFPGANv1Clean_512")
        ckpt = self.save_checkpoint("GFPGANv1Clean_512", net)
        parse_ckpt = self.manifest["cases"]["ParseNet"]["checkpoint"]
        # GFPGANer.__init__ builds a full-size network and loads model_path into it; the official
        # enhance() is run unchanged on an instance that holds the small network instead.
        r = gu.GFPGANer.__new__(gu.GFPGANer)
        r.upscale, r.bg_upsampler, r.device = 2, None, torch.device("cpu")
        r.face_helper = self.helper(weights, 2, True)
        r.gfpgan = net
        r.gfpgan.forward = functools.partial(net.forward, randomize_noise=False)

        def given_landmarks(*args, **kwargs):
            r.face_helper.all_landmarks_5 = [lm.copy() for lm in landmarks]
            return len(landmarks)

        r.face_helper.get_face_landmarks_5 = given_landmarks
        with torch.no_grad():
            crops, restored, restored_img = r.enhance(img.copy(), has_aligned=False, only_center_face=False,
                                                      paste_back=True, weight=0.5)
            _, restored_aligned, _ = r.enhance(crops[0].copy(), has_aligned=True)
        assert [_array_sha(c) for c in crops] == self.manifest["face_helper"]["crops_sha256"]
        _write_png(self.out / "gfpganer_restored_img.png", restored_img)
        np.savez_compressed(self.out / "gfpganer.npz", restored_faces_grid8=np.stack([_grid(f) for f in restored]),
                            restored_aligned_grid8=_grid(restored_aligned[0]))
        self.manifest["gfpganer"] = OrderedDict(
            model=ckpt, parser=parse_ckpt, photo="photo.png", landmarks="face_helper.npz:landmarks",
            restored_img="gfpganer_restored_img.png", arrays="gfpganer.npz",
            restored_faces_sha256=[_array_sha(f) for f in restored],
            restored_aligned_sha256=_array_sha(restored_aligned[0]),
            call="GFPGANer.enhance(photo, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5) "
                 "(the official network ignores weight: fully restored) with upscale=2, bg_upsampler=None, "
                 "gfpgan = GFPGANv1Clean_512 (forward pinned to randomize_noise=False), face_helper = "
                 "FaceRestoreHelper(2, use_parse=True) whose face_parse is the ParseNet case's model and whose "
                 "get_face_landmarks_5 yields the given landmarks; then enhance(cropped_faces[0], has_aligned=True)")

    def run(self):
        self.out.mkdir(parents=True, exist_ok=True)
        for f in self.out.iterdir():
            if f.is_file() and f.name != "README.md":
                f.unlink()
        self.network_cases()
        with self.helper_weights() as weights:
            self.face_helper_case(weights)
            self.gfpganer_case(weights)
        files = sorted(f for f in self.out.iterdir() if f.is_file() and f.name not in ("README.md", "manifest.json"))
        for f in files:
            self.manifest["files"][f.name] = dict(bytes=f.stat().st_size, sha256=_sha(f.read_bytes()))
        (self.out / "manifest.json").write_text(json.dumps(self.manifest, indent=1) + "\n")
        total = sum(f.stat().st_size for f in self.out.iterdir() if f.is_file())
        for name, info in self.manifest["files"].items():
            print(f"{info['bytes']:>9}  {info['sha256'][:16]}  {name}")
        print(f"{total:>9}  total")


def _face_tensor(face_bgr: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(face_bgr.numpy()[..., ::-1])).float() / 255.0
    return ((x - 0.5) / 0.5).permute(2, 0, 1).unsqueeze(0).contiguous()


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, default=DEFAULT_KIT, help="the reference kit folder (has official.py)")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="Blake_Lively.jpg of ../shared/data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the tests run: the same summation order
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    Maker(args.kit, args.out, args.photo).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
