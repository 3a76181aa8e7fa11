"""TensorFlow "same" padding in one convolution: timm's stride-2 `Conv2dSame` without its separate pad.

timm's `tf_*` models (EfficientNet-Lite among them) pad their stride-2 convolutions as TensorFlow does: for a side
of length `i`, kernel `k` (odd, >= 3), stride 2 and dilation 1 the total padding is

    total = max((ceil(i / 2) - 1) * 2 + k - i, 0)     # i odd: k - 1;  i even: k - 2
    before = total // 2,  after = total - before      # i odd: (k//2, k//2);  i even: (k//2 - 1, k//2)

so `Conv2dSame` pads each input with `F.pad` (a full copy of the activation) and then convolves without padding.
An odd side is padded symmetrically, which a convolution's own `padding=k//2` does. An even side is padded one
less before than after; the same outputs come from the symmetric `padding=k//2` with the kernel's taps shifted one
place later, i.e. a zero tap put in front along that side (kernel `k + 1`):

    out[j] = sum_{u < k} w[u] x[2j - (k//2 - 1) + u] = sum_{t < k+1} w'[t] x[2j - k//2 + t],  w' = [0, w0, ..., w(k-1)]

with `floor((i + 2 (k//2) - (k + 1)) / 2) + 1 = i / 2` outputs, as TensorFlow gives. Multiplying the zero tap adds
exact zeros, so outputs equal `Conv2dSame`'s (the tests compare them). `StaticSameConv2d` extends its kernel by the
parities of each input, so any input size works. The saving is the pad's copy of each activation
(docs/benchmarks.md has the times).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from torch import nn

STRIDE = (2, 2)


class StaticSameConv2d(nn.Conv2d):
    """A stride-2 TensorFlow-"same" convolution as one `F.conv2d` with symmetric padding (see the module docstring).

    Same parameters as the `Conv2dSame` it replaces (shared), so it folds, moves and saves like any `nn.Conv2d`; the
    zero-extended kernel is made from `weight` at each call (a few microseconds: the kernels are tiny).
    """

    @classmethod
    def from_conv(cls, conv: Conv2dSame) -> StaticSameConv2d:
        """The same convolution (same parameters, shared) without the separate pad."""
        static = nn.utils.skip_init(  # no initialisation: draws nothing from the global random generator
            cls, conv.in_channels, conv.out_channels, conv.kernel_size, stride=STRIDE,
            padding=tuple(size // 2 for size in conv.kernel_size), groups=conv.groups, bias=conv.bias is not None,
            device=conv.weight.device, dtype=conv.weight.dtype)
        static.weight, static.bias = conv.weight, conv.bias
        return static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C_in, H, W)` -> `(B, C_out, ceil(H / 2), ceil(W / 2))`, equal to `Conv2dSame`'s output."""
        height, width = x.shape[-2:]
        # (C_out, C_in / groups, k, k) -> (C_out, C_in / groups, k + [H even], k + [W even]): a zero tap in front
        kernel = F.pad(self.weight, (int(width % 2 == 0), 0, int(height % 2 == 0), 0))
        return F.conv2d(x, kernel, self.bias, self.stride, self.padding, self.dilation, self.groups)


def convertible(module: nn.Module) -> bool:
    """A `Conv2dSame` this module replaces exactly: stride 2, dilation 1, odd kernel sides of at least 3."""
    return (isinstance(module, Conv2dSame) and tuple(module.stride) == STRIDE and tuple(module.dilation) == (1, 1)
            and all(size >= 3 and size % 2 == 1 for size in module.kernel_size))


def make_padding_static(model: nn.Module) -> int:
    """Replace, in place, every convertible `Conv2dSame` of `model` by a `StaticSameConv2d`; returns how many.

    The replacements share the original parameters, so BatchNorm folding (`usvcl_hf.runtime.batchnorm_folding`) and
    memory-format changes work before or after.
    """
    names = [name for name, module in model.named_modules() if convertible(module)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, StaticSameConv2d.from_conv(getattr(parent, child)))
    return len(names)


__all__ = ["StaticSameConv2d", "convertible", "make_padding_static"]
