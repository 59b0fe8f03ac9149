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


@pytest.fixture
def shared_data() -> Path:
    """The real test photos; tests using them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA.resolve()
