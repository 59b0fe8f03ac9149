"""upfirdn2d and fused_leaky_relu against direct formulas, including first and second derivatives."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from facerestore.archs.ops import FusedLeakyReLU, _upfirdn2d_ref, fused_leaky_relu, upfirdn2d


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine threads spin-wait."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

CASES = [  # up, down, pad
    (1, 1, (1, 1)), (1, 1, (-1, 2)), (2, 1, (2, 1)), (2, 1, (1, 1)), (1, 2, (2, 1)), (1, 2, (1, 1)),
    (2, 2, (1, 2)), (3, 1, (0, -1)), (1, 3, (2, 0)),
]


def upfirdn_numpy(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """The textbook definition, one output pixel at a time (B, C, H, W)."""
    b, c, h, w = x.shape
    kh, kw = f.shape
    p0, p1 = pad
    u = np.zeros((b, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    big = np.zeros((b, c, h * up + 2 * abs(p0) + 2 * abs(p1), w * up + 2 * abs(p0) + 2 * abs(p1)))
    o = abs(p0) + abs(p1)  # place u at offset o, then crop to the padded window
    big[:, :, o:o + h * up, o:o + w * up] = u
    padded = big[:, :, o - p0:o + h * up + p1, o - p0:o + w * up + p1]
    oh, ow = (padded.shape[2] - kh) // down + 1, (padded.shape[3] - kw) // down + 1
    out = np.zeros((b, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for ky in range(kh):
                for kx in range(kw):  # true convolution: kernel index runs against the input index
                    out[:, :, i, j] += f[ky, kx] * padded[:, :, i * down + kh - 1 - ky, j * down + kw - 1 - kx]
    return out


@pytest.mark.parametrize("up,down,pad", CASES)
def test_upfirdn2d_matches_definition(up, down, pad):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    f = torch.rand(4, 3, dtype=torch.float64)  # asymmetric: catches a missing flip
    expected = upfirdn_numpy(x.numpy(), f.numpy(), up, down, pad)
    for fn in (upfirdn2d, _upfirdn2d_ref):
        out = fn(x, f, up, down, pad)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def test_upfirdn2d_fast_equals_ref_float32():
    x = torch.randn(2, 5, 16, 16)
    k = torch.tensor([1.0, 3, 3, 1])
    k = (k[:, None] * k[None, :]) / 64 * 4
    for up, down, pad in [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 1, (2, 1))]:
        torch.testing.assert_close(upfirdn2d(x, k, up, down, pad), _upfirdn2d_ref(x, k, up, down, pad),
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (-1, 2))])
def test_upfirdn2d_gradients(up, down, pad):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.rand(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up, down, pad), (x,))
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d(t, f, up, down, pad) ** 2, (x,))


def test_fused_leaky_relu_matches_formula():
    x = torch.randn(4, 6, 3, 5)
    b = torch.randn(6)
    z = x + b[None, :, None, None]
    expected = torch.where(z > 0, z, 0.2 * z) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(x, b), expected, atol=0, rtol=0)
    # 2-D input (EqualLinear) and no bias
    x2 = torch.randn(4, 6)
    torch.testing.assert_close(fused_leaky_relu(x2, b), torch.where(x2 + b > 0, x2 + b, 0.2 * (x2 + b)) * math.sqrt(2))
    torch.testing.assert_close(fused_leaky_relu(x2, None, 0.1, 2.0), torch.where(x2 > 0, x2, 0.1 * x2) * 2.0)


def test_fused_leaky_relu_gradients():
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    fused_leaky_relu(x, b).sum().backward()
    z = (x + b[None, :, None, None]).detach()
    slope = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, 0.2)) * math.sqrt(2)
    torch.testing.assert_close(x.grad, slope)
    torch.testing.assert_close(b.grad, slope.sum((0, 2, 3)))
    assert torch.autograd.gradgradcheck(lambda t, c: fused_leaky_relu(t, c) ** 2, (x, b))


def test_fused_leaky_relu_module():
    m = FusedLeakyReLU(5)
    assert [n for n, _ in m.named_parameters()] == ["bias"] and m.bias.shape == (5,)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(m(x), F.leaky_relu(x + m.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2))
