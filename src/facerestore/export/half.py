"""Half-precision (fp16 / bf16) inference for the networks of ``facerestore.archs``.

No peer runs these face models in half precision, because the clean StyleGAN2's style
normalisation ``x * rsqrt(mean(x**2) + 1e-8)`` overflows fp16 as soon as |x| > 256
(``x**2`` > 65504; GFPGAN issue #50). The architectures themselves keep every such step in fp32
whatever the dtype of the weights (``archs.ops.wide``): the style normalisation, the sums of
squared weights of the demodulation, RestoreFormer's codebook distances. So converting a model is
only a cast; this helper checks what it is given and says where half precision is untested.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["HALF_DTYPES", "to_half"]

HALF_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
               "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def to_half(model: nn.Module, dtype: torch.dtype | str = torch.bfloat16) -> nn.Module:
    """Cast ``model``'s weights and buffers to ``dtype`` (fp16 or bf16) in place; returns it.

    Feed the model inputs of the same dtype (``x.to(dtype)``) and cast the output back with
    ``.float()``. bf16 keeps fp32's range (safe everywhere, 8-bit mantissa); fp16 has a 10-bit
    mantissa but overflows beyond 65504, which the fp32 reductions inside the networks guard
    against. On CPU, bf16 runs through oneDNN where the CPU has AVX-512 BF16 / AMX; fp16 on
    CPU is often slower than fp32. Measured: see benchmarks/README.md (GPU: not yet measured).
    """
    if isinstance(dtype, str):
        try:
            dtype = HALF_DTYPES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unknown half-precision type {dtype!r}; use one of {sorted(HALF_DTYPES)}") from None
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"to_half takes torch.float16 or torch.bfloat16, not {dtype}")
    return model.to(dtype)
