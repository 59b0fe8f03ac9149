"""Convert facenet-pytorch's MTCNN weights into the pickle-free file shipped with facerestore.

Run once, by a maintainer, never at install or run time:

    pip download --no-deps facenet-pytorch==2.6.0 -d /tmp/fnp
    python scripts/convert_mtcnn_weights.py /tmp/fnp/facenet_pytorch-2.6.0-py3-none-any.whl

It reads `facenet_pytorch/data/{pnet,rnet,onet}.pt` from the wheel (or from a folder holding those
three files), loads each with `torch.load(weights_only=True)`, and writes one `.npz` whose keys are
`pnet.conv1.weight`, ..., `onet.dense6_3.bias` (the names of `facerestore.archs.mtcnn.MTCNN`).
The zip entries carry a fixed timestamp, so the same input always gives the same bytes (sha256).
The weights are MIT-licensed (see src/facerestore/data/LICENSE-mtcnn.txt); facenet-pytorch itself
is not a dependency of facerestore.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

NETS = ("pnet", "rnet", "onet")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "facerestore" / "data" / "mtcnn.npz"


def read_state_dicts(source: Path) -> dict[str, np.ndarray]:
    """Return {"pnet.conv1.weight": array, ...} from a facenet-pytorch wheel or data folder."""
    arrays: dict[str, np.ndarray] = {}
    for net in NETS:
        if source.is_dir():
            raw = (source / f"{net}.pt").read_bytes()
        else:
            with zipfile.ZipFile(source) as whl:
                raw = whl.read(f"facenet_pytorch/data/{net}.pt")
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        for name, tensor in state.items():
            arrays[f"{net}.{name}"] = tensor.detach().cpu().numpy().astype(np.float32)
    return arrays


def write_npz(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Like np.savez, but with a fixed zip timestamp so the file is reproducible."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="facenet-pytorch wheel, or a folder with {p,r,o}net.pt")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    arrays = read_state_dicts(args.source)
    write_npz(arrays, args.out)
    n_params = sum(a.size for a in arrays.values())
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {len(arrays)} arrays, {n_params:,} parameters, "
          f"{args.out.stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
