"""The released model files: where they come from, how to check them, where they are cached.

Nothing here runs at import. A file is fetched only when a model is first used
(:func:`ensure_model_file`), into one cache folder, streamed with a progress bar into a temp
file that is renamed into place only after its size and sha256 match. Before downloading we
look where users of the official tools already keep the same files.
"""
from __future__ import annotations

import contextlib
import http.client
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..io.atomic import atomic_path, atomic_write_text

CACHE_ENV = "FACERESTORE_HOME"
OFFLINE_ENV = "FACERESTORE_OFFLINE"
# Comma-separated model names whose licence the user accepts (as --accept-license NAME does).
ACCEPT_LICENSE_ENV = "FACERESTORE_ACCEPT_LICENSE"
# Licences of released weights that restrict use.
CODEFORMER_LICENSE = "S-Lab License 1.0 (non-commercial)"
GPEN_LICENSE = "unstated (no licence file; commercial restrictions cited)"
# Licences under which weights are never downloaded without the user's explicit yes: not for
# commercial use, or no licence stated at all.
LICENSE_CONSENT = frozenset({CODEFORMER_LICENSE, GPEN_LICENSE})

# Where the official CLI (inference_gfpgan.py, GFPGANer) keeps weights, relative to the working dir.
LEGACY_DIRS = ("experiments/pretrained_models", "gfpgan/weights")

_GH = "https://github.com"
_GPEN = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"  # the links in GPEN's README


@dataclass(frozen=True)
class ModelEntry:
    name: str
    filename: str
    url: str
    arch: str
    # sha256 and size as published; None where no public value exists (then the size and hash
    # are recorded on first download and checked from then on, see _pinned_hash).
    sha256: str | None = None
    size: int | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    license: str = ""
    approx_size: str = ""  # as seen in public lists, where the exact byte count is not published


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("v1", "GFPGANv1.pth", f"{_GH}/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1.pth",
               "GFPGANv1",
               description="paper model; colourises; more artefacts", aliases=("1", "1.0"), license="Apache-2.0"),
    ModelEntry("v1.2", "GFPGANCleanv1-NoCE-C2.pth",
               f"{_GH}/TencentARC/GFPGAN/releases/download/v0.2.0/GFPGANCleanv1-NoCE-C2.pth",
               "GFPGANv1Clean", description="no colourisation; sharper, with make-up look",
               aliases=("1.2",), license="Apache-2.0"),
    ModelEntry("v1.3", "GFPGANv1.3.pth", f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
               "GFPGANv1Clean",
               sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
               description="more natural; robust to very low or high quality", aliases=("1.3",), license="Apache-2.0"),
    ModelEntry("v1.4", "GFPGANv1.4.pth", f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
               "GFPGANv1Clean",
               sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", size=348632874,
               description="more details and better identity (default)", aliases=("1.4",), license="Apache-2.0"),
    ModelEntry("RestoreFormer", "RestoreFormer.pth",
               f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth", "RestoreFormer",
               description="transformer-based restoration (Wang et al. 2022)", aliases=("restoreformer",),
               license="Apache-2.0"),
    ModelEntry("realesrgan-x2plus", "RealESRGAN_x2plus.pth",
               f"{_GH}/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth", "RRDBNet",
               sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", size=67061725,
               description="Real-ESRGAN x2 background upsampler", aliases=("realesrgan",), license="BSD-3-Clause"),
    ModelEntry("realesrgan-x4plus", "RealESRGAN_x4plus.pth",
               f"{_GH}/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth", "RRDBNet",
               sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", size=67040989,
               description="Real-ESRGAN x4 background upsampler", license="BSD-3-Clause"),
    ModelEntry("retinaface-resnet50", "detection_Resnet50_Final.pth",
               f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth", "RetinaFace",
               sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d", size=109497761,
               description="face detector used by the official pipeline", license="MIT"),
    ModelEntry("retinaface-mobilenet0.25", "detection_mobilenet0.25_Final.pth",
               f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
               "RetinaFace", description="small, fast face detector", license="MIT"),
    ModelEntry("parsenet", "parsing_parsenet.pth",
               f"{_GH}/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth", "ParseNet",
               sha256="3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2", size=85331193,
               description="face parsing; gives the paste-back mask", license="MIT"),
    ModelEntry("arcface-resnet18", "arcface_resnet18.pth",
               f"{_GH}/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth", "ResNetArcFace",
               description="identity network (training loss, identity score)", license="Apache-2.0"),
    ModelEntry("restoreformer++", "RestoreFormer++.ckpt",
               f"{_GH}/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/RestoreFormer++.ckpt",
               "RestoreFormerPlusPlus", description="RestoreFormer with multi-scale attention (Wang et al. 2023)",
               aliases=("RestoreFormerPlusPlus", "rf++"), license="Apache-2.0", approx_size="294.0 MB"),
    ModelEntry("codeformer", "codeformer.pth", f"{_GH}/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
               "CodeFormer", description="codebook transformer; -w is its fidelity (0 quality .. 1 fidelity)",
               aliases=("CodeFormer",), license=CODEFORMER_LICENSE, approx_size="376.6 MB"),
    ModelEntry("gpen-bfr-512", "GPEN-BFR-512.pth", f"{_GPEN}/GPEN-BFR-512.pth", "FullGenerator",
               description="GPEN blind face restoration, 512 px (Yang et al. 2021)", aliases=("gpen", "gpen-512"),
               license=GPEN_LICENSE, approx_size="284 MB"),
    ModelEntry("gpen-bfr-256", "GPEN-BFR-256.pth", f"{_GPEN}/GPEN-BFR-256.pth", "FullGenerator",
               description="GPEN blind face restoration, 256 px", aliases=("gpen-256",),
               license=GPEN_LICENSE, approx_size="76 MB"),
    # training-only files (facerestore train)
    ModelEntry("stylegan2-512", "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth",
               f"{_GH}/TencentARC/GFPGAN/releases/download/v0.1.0/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth",
               "StyleGAN2Generator",
               description="StyleGAN2 prior: initialises the GFPGANv1 decoder for training", license="Apache-2.0"),
    ModelEntry("ffhq-components", "FFHQ_eye_mouth_landmarks_512.pth",
               f"{_GH}/TencentARC/GFPGAN/releases/download/v0.1.0/FFHQ_eye_mouth_landmarks_512.pth",
               "landmarks", description="FFHQ eye/mouth boxes for the component discriminators (training)",
               license="Apache-2.0"),
    ModelEntry("vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "VGG19",
               description="torchvision VGG19 (ImageNet): perceptual/style loss in training", license="BSD-3-Clause"),
)


class ModelUnavailableError(RuntimeError):
    """A model file is not on disk and could not be fetched; the message says what to do."""


class ChecksumError(RuntimeError):
    """A file's size or sha256 does not match the published value."""


class LicenseConsentError(ModelUnavailableError):
    """A model under a restrictive or unstated licence would be downloaded without the user's yes."""


_accepted_licenses: set[str] = set()
_noted_licenses: set[str] = set()


def accept_license(*names: str) -> None:
    """Record the user's yes to the licences of these models (names or aliases), for this process;
    the ``--accept-license NAME`` flags call this. ``$FACERESTORE_ACCEPT_LICENSE`` does the same."""
    _accepted_licenses.update(n.strip().lower() for n in names if n.strip())


def needs_consent(entry: ModelEntry) -> bool:
    return entry.license in LICENSE_CONSENT


def license_accepted(entry: ModelEntry) -> bool:
    from_env = {n.strip().lower() for n in os.environ.get(ACCEPT_LICENSE_ENV, "").split(",") if n.strip()}
    names = {entry.name.lower(), entry.filename.lower(), *(a.lower() for a in entry.aliases)}
    return bool(names & (_accepted_licenses | from_env))


def note_license(what: str, license: str) -> None:
    """Print a restrictive licence to stderr, once per model per process, when a model is used."""
    if license in LICENSE_CONSENT and what not in _noted_licenses:
        _noted_licenses.add(what)
        print(f"note: {what} weights are under {license}; make sure your use is allowed.", file=sys.stderr)


def find_entry(name: str) -> ModelEntry | None:
    """The zoo entry for a name, alias or release file name (case-insensitive), or None."""
    key = name.strip().lower()
    for entry in MODELS:
        names = {entry.name.lower(), entry.filename.lower(), *(a.lower() for a in entry.aliases)}
        if key in names:
            return entry
    return None


def cache_dir() -> Path:
    """The folder for downloaded weights: $FACERESTORE_HOME, else $XDG_CACHE_HOME/facerestore."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "facerestore"


def cached_path(entry: ModelEntry) -> Path:
    return cache_dir() / entry.filename


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _pinned_hash(entry: ModelEntry) -> str | None:
    """The published sha256, or the one recorded when this cache first downloaded the file."""
    if entry.sha256:
        return entry.sha256
    record = cached_path(entry).with_name(entry.filename + ".sha256")
    return record.read_text().strip() if record.is_file() else None


def verify_file(path: Path, entry: ModelEntry) -> None:
    """Raise ChecksumError unless the file has the expected size and (when known) sha256."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ChecksumError(f"{path}: {size} bytes, expected {entry.size} for {entry.filename}")
    expected = _pinned_hash(entry)
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise ChecksumError(f"{path}: sha256 {actual[:12]}…, expected {expected[:12]}… for {entry.filename}")


def _legacy_candidates(entry: ModelEntry) -> Iterator[Path]:
    for folder in LEGACY_DIRS:
        candidate = Path.cwd() / folder / entry.filename
        if candidate.is_file():
            yield candidate


def locate(entry: ModelEntry) -> Path | None:
    """An already-present, verified copy of the file: the cache, then the official tools' folders.

    Cached files are trusted on size (hashing 350 MB on every start would cost seconds);
    ``facerestore models --verify`` re-hashes them. Files found in the official folders are
    hashed before use, since we did not write them.
    """
    cached = cached_path(entry)
    if cached.is_file() and (entry.size is None or cached.stat().st_size == entry.size):
        return cached
    for candidate in _legacy_candidates(entry):
        if entry.sha256 is None and entry.size is None:
            return candidate  # nothing published to check against; the strict load checks the layout
        try:
            verify_file(candidate, entry)
        except ChecksumError:
            continue
        return candidate
    return None


def missing_message(entry: ModelEntry, reason: str) -> str:
    check = f" (sha256 {entry.sha256})" if entry.sha256 else ""
    cached = cached_path(entry)
    if cached.is_file():  # present but refused by locate(): say so, or "put it at" reads as nonsense
        reason += (f"; the file at {cached} has {cached.stat().st_size} bytes, not the expected "
                   f"{entry.size} (a partial copy or another file?)")
    return (f"{entry.filename} (model '{entry.name}') is not cached and cannot be downloaded: {reason}.\n"
            f"Download it from {entry.url}\n"
            f"and put it at {cached_path(entry)}{check}, "
            f"or set {CACHE_ENV} to a folder that holds it.")


def ensure_model_file(entry: ModelEntry, *, allow_download: bool = True, progress: bool = True) -> Path:
    """The local path of a zoo file, downloading it into the cache on first use."""
    found = locate(entry)
    if found is not None:
        return found
    if not allow_download or os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise ModelUnavailableError(missing_message(entry, f"downloads are disabled ({OFFLINE_ENV} is set)"
                                                    if allow_download else "downloads are disabled"))
    if needs_consent(entry) and not license_accepted(entry):
        raise LicenseConsentError(
            f"'{entry.name}' ({entry.filename}) is under {entry.license}, so it is not downloaded without "
            f"your explicit yes. If your use is allowed, pass --accept-license {entry.name} or set "
            f"{ACCEPT_LICENSE_ENV}={entry.name}; or download it yourself from {entry.url} "
            f"into {cache_dir()}.")
    try:
        download(entry.url, cached_path(entry), sha256=entry.sha256, size=entry.size, progress=progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ChecksumError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelUnavailableError(missing_message(entry, f"download failed ({reason})")) from exc
    if entry.sha256 is None:
        # No published hash: record what we got so later corruption is still detected.
        record = cached_path(entry).with_name(entry.filename + ".sha256")
        atomic_write_text(record, sha256_of(cached_path(entry)) + "\n")
    return cached_path(entry)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes fetching the same file do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if sys.platform != "win32":
                import fcntl
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Stream ``url`` to ``dest`` atomically; verify size and sha256 before the file appears.

    The bytes go to a hidden ``.partial`` file in the same folder and are renamed over ``dest`` only
    when complete and matching; on any failure the partial file is removed. A per-file lock
    makes concurrent callers wait, after which they find the finished file.
    """
    dest = Path(dest)
    with _file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and (size is None or dest.stat().st_size == size) and (
                sha256 is None or sha256_of(dest) == sha256):
            return dest  # another process finished it while we waited
        with atomic_path(dest, suffix=".partial") as partial:
            _stream_to(url, partial, sha256=sha256, size=size, progress=progress, timeout=timeout)
    return dest


def _stream_to(url: str, target: Path, *, sha256: str | None, size: int | None, progress: bool,
               timeout: float) -> None:
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "facerestore"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else size
        digest = hashlib.sha256()
        received = 0
        with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                             desc=target.name.split(".partial")[0].rsplit(".", 1)[0],
                                             disable=not progress, leave=False) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    if announced and announced.isdigit() and received != int(announced):
        raise ChecksumError(f"{url}: transfer ended after {received} of {announced} bytes")
    if size is not None and received != size:
        raise ChecksumError(f"{url}: got {received} bytes, expected {size}")
    if sha256 is not None and digest.hexdigest() != sha256:
        raise ChecksumError(f"{url}: sha256 {digest.hexdigest()[:12]}… does not match the published "
                            f"{sha256[:12]}…; the file is corrupt or has changed")
