"""Files the network-based metrics need, fetched through the zoo's download machinery.

They are kept out of ``zoo.MODELS`` because they are not restoration models (``load_model`` cannot
build them) and two are hosted outside GitHub. Each is downloaded on first use into the same cache
(``$FACERESTORE_HOME``), verified by sha256 where one is published, else trusted on first use
(the hash is recorded beside the file), exactly like the zoo's own files.
"""
from __future__ import annotations

from pathlib import Path

from ..models import zoo
from ..models.zoo import ModelEntry

METRIC_FILES: tuple[ModelEntry, ...] = (
    # LPIPS v0.1 linear calibration layers (BSD-2-Clause, richzhang/PerceptualSimilarity). Its sha256
    # is the one the lpips 0.1.4 wheel publishes in its RECORD for lpips/weights/v0.1/vgg.pth.
    ModelEntry("lpips-vgg", "lpips_v0.1_vgg.pth",
               "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
               "LPIPS", sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", size=7289,
               description="LPIPS (VGG) linear layers, v0.1"),
    # torchvision's ImageNet VGG16 (the trunk LPIPS-VGG uses); its name carries the sha256 prefix.
    ModelEntry("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
               "VGG16", description="ImageNet VGG16 (torchvision release), trunk of LPIPS-VGG"),
    # AWing FAN, 98 WFLW landmarks (facexlib's release), for LMD.
    ModelEntry("awing-fan", "alignment_WFLW_4HG.pth",
               "https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth",
               "AWingFAN", description="98-point face landmarks (facexlib release), for LMD"),
    # The FID Inception-v3 (TensorFlow's 2015-12-05 graph as ported by pytorch-fid; BasicSR loads
    # this file). The name carries its sha256 prefix; no full hash is published.
    ModelEntry("inception-fid", "pt_inception-2015-12-05-6726825d.pth",
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth",
               "FIDInceptionV3", description="Inception-v3 for FID features (pytorch-fid release)"),
)

# The reference statistics the GFPGAN authors use are not on a direct-download host: the user
# passes the file (``--fid-stats``); this says where to get it.
FID_STATS_HELP = ("the reference statistics inception_FFHQ_512-f7b384ab.pth (50,000 FFHQ faces at 512 px, "
                  "BasicSR's 'metrics data' folder: https://drive.google.com/drive/folders/"
                  "13cWIQyHX3iNmZRJ5v8v3kdyrT9RBTAi9), or a pytorch-fid .npz with mu and sigma")


def find_metric_file(name: str) -> ModelEntry:
    for entry in METRIC_FILES:
        if name.lower() in (entry.name, entry.filename.lower()):
            return entry
    raise KeyError(name)


def metric_file(name_or_path: str | Path, *, allow_download: bool = True) -> Path:
    """A local file: ``name_or_path`` itself when it is a file, else the named entry's cached copy
    (downloaded on first use). Raises ``zoo.ModelUnavailableError`` naming the URL and the path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    try:
        entry = find_metric_file(str(name_or_path))
    except KeyError:
        names = ", ".join(e.name for e in METRIC_FILES)
        raise FileNotFoundError(f"'{name_or_path}' is neither a file nor a known metric file ({names})") from None
    return zoo.ensure_model_file(entry, allow_download=allow_download)
