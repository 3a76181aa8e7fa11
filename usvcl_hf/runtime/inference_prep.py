"""A loaded model made ready for CPU inference: eval mode, BatchNorms folded, static padding, channels_last.

Each step keeps the outputs (within float rounding) and makes a CPU forward faster; `load_model` and
`load_lesion_model` apply all of them by default. A prepared model is for inference only (folding removes the
BatchNorm buffers): load with `from_pretrained` to train or save.
"""

from __future__ import annotations

import torch
from torch import nn

from .batchnorm_folding import example_input, fold_batchnorms
from .static_padding import make_padding_static


def prepare_for_inference(model: nn.Module, fold: bool = True, static_padding: bool = True) -> nn.Module:
    """`model` in eval mode, channels_last (NHWC convolutions: faster on a CPU, same outputs), with `fold` its
    BatchNorms folded into their convolutions (`fold_batchnorms` on `example_input(model.config)`) and with
    `static_padding` its TensorFlow-"same" stride-2 convolutions padded inside the convolution
    (`usvcl_hf.runtime.static_padding.make_padding_static`: same outputs, no separate pad)."""
    model = model.eval()
    if fold:
        model, _ = fold_batchnorms(model, example_input(model.config))
    if static_padding:
        make_padding_static(model)
    return model.to(memory_format=torch.channels_last)  # after folding: the folded weights become NHWC too


__all__ = ["prepare_for_inference"]
