import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# The suite runs on PyTorch unless a test asks for an engine (tests/test_engines.py): exporting
# every tiny test model to a graph would only cost time. Subprocesses inherit it.
os.environ.setdefault("FACERESTORE_BACKEND", "torch")

# One thread: the test models are tiny, and on a shared 2-core runner extra threads only spin.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, request) -> Path:
    """A tiny, real GFPGANv1Clean weights file in the release layout (``stand_ins.write_tiny_checkpoint``),
    with 512-px crops as the released models; a test module that sets ``TINY_FACE_SIZE = 64`` gets
    64-px crops (the video tests: a 64-px forward costs ~1/16 of a 512-px one)."""
    from stand_ins import write_tiny_checkpoint

    size = getattr(request.module, "TINY_FACE_SIZE", 512)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / f"tiny_clean{size}.pth", size)


@pytest.fixture
def offline_zoo(tmp_path, monkeypatch) -> Path:
    """No downloads, and an empty model cache: a test sees only the weights it writes itself.
    Modules use it with ``pytestmark = pytest.mark.usefixtures("offline_zoo")``."""
    from facerestore.models import zoo

    cache = tmp_path / "empty-cache"
    monkeypatch.setenv(zoo.CACHE_ENV, str(cache))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    return cache


@pytest.fixture
def shared_data() -> Path:
    """The real test photos; tests using them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA.resolve()
