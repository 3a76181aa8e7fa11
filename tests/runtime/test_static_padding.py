"""Static "same" padding (usvcl_hf/runtime/static_padding.py): `StaticSameConv2d` equals timm's `Conv2dSame` (pad, then
convolve) for every kernel, grouping and input-side parity; whole tf_ models keep their outputs; the loaders use it
by default and not on request."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame

from tests.helpers.demo_fixtures import (
    TINY_CLASSIFIER,
    TINY_IMAGE_SIZE,
    TINY_LESION_MODEL,
    assert_same_outputs,
    save_tiny_classifier,
    save_tiny_lesion_model,
)
from usvcl_hf import LesionConfig, LesionSegmentationModel, UsvclConfig, UsvclForImageClassification
from usvcl_hf.runtime.clip_prediction import load_model
from usvcl_hf.runtime.lesion import load_lesion_model
from usvcl_hf.runtime.static_padding import StaticSameConv2d, convertible, make_padding_static

TF_BACKBONE = "tf_efficientnet_lite0"


def tensorflow_same_reference(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """TensorFlow's "same" rule written out side by side: pad before = total // 2, after = the rest, then a
    valid convolution."""
    pads = []
    for size, kernel, stride in zip(x.shape[:-3:-1], conv.kernel_size[::-1], conv.stride[::-1]):  # W, then H
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, 1, conv.groups)


def tiny_tf_model(model_class, config_class, tiny: dict) -> torch.nn.Module:
    """A random tiny `model_class` over the tf_ backbone, in eval mode."""
    torch.manual_seed(0)
    return model_class(config_class(**{**tiny, "backbone": TF_BACKBONE})).eval()


def same_convolutions(model: torch.nn.Module) -> tuple[int, int]:
    """(timm `Conv2dSame` count, `StaticSameConv2d` count)."""
    modules = list(model.modules())
    return (sum(isinstance(module, Conv2dSame) for module in modules),
            sum(isinstance(module, StaticSameConv2d) for module in modules))


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize(("in_channels", "groups"), [(4, 1), (6, 6)])  # dense and depthwise
@pytest.mark.parametrize(("height", "width"), [(16, 16), (17, 17), (16, 15), (9, 12), (1, 2)])
def test_equals_conv2d_same_and_the_tensorflow_rule(kernel, in_channels, groups, height, width):
    torch.manual_seed(kernel + height + width)
    same = Conv2dSame(in_channels, 6, kernel, stride=2, groups=groups, bias=kernel != 5).eval()
    static = StaticSameConv2d.from_conv(same)
    x = torch.randn(2, in_channels, height, width)
    with torch.no_grad():
        expected, got = same(x), static(x)
        reference = tensorflow_same_reference(x, same)
    assert got.shape == expected.shape == (2, 6, -(-height // 2), -(-width // 2))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(expected, reference, rtol=1e-5, atol=1e-6)


def test_shares_the_parameters_and_draws_no_random_numbers():
    same = Conv2dSame(3, 4, 3, stride=2)
    state = torch.random.get_rng_state()
    static = StaticSameConv2d.from_conv(same)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert static.weight is same.weight and static.bias is same.bias
    assert static.padding == (1, 1) and static.stride == (2, 2)


@pytest.mark.parametrize("conv", [
    Conv2dSame(3, 4, 3, stride=1),  # stride 1: timm pads these statically already
    Conv2dSame(3, 4, 3, stride=2, dilation=2),
    Conv2dSame(3, 4, 1, stride=2),  # k = 1: an even side needs no pad at all
    Conv2dSame(3, 4, 4, stride=2),  # even kernel
    torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
], ids=["stride1", "dilated", "k1", "k4", "plain"])
def test_other_convolutions_are_left_alone(conv):
    assert not convertible(conv)
    model = torch.nn.Sequential(conv)
    assert make_padding_static(model) == 0 and model[0] is conv


@pytest.mark.parametrize("size", [TINY_IMAGE_SIZE, TINY_IMAGE_SIZE + 1, 50])
def test_tf_classifier_keeps_its_outputs(size):
    model = tiny_tf_model(UsvclForImageClassification, UsvclConfig, TINY_CLASSIFIER)
    converted = copy.deepcopy(model)
    assert make_padding_static(converted) == 5 and same_convolutions(converted) == (0, 5)
    assert_same_outputs(model, converted, torch.randn(2, 1, size, size + 3))


def test_tf_lesion_model_keeps_its_outputs():
    model = tiny_tf_model(LesionSegmentationModel, LesionConfig, TINY_LESION_MODEL)
    converted = copy.deepcopy(model)
    assert make_padding_static(converted) > 0 and same_convolutions(converted)[0] == 0
    assert_same_outputs(model, converted, torch.randn(2, 1, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE))


@pytest.mark.parametrize(("save", "load"), [(save_tiny_classifier, load_model),
                                            (save_tiny_lesion_model, load_lesion_model)])
def test_loaders_pad_statically_by_default_and_not_on_request(tmp_path, save, load):
    folder = save(tmp_path / "model", backbone=TF_BACKBONE)
    static, _ = load(folder)
    dynamic, _ = load(folder, static_padding=False)
    assert same_convolutions(static)[0] == 0 < same_convolutions(static)[1]
    assert same_convolutions(dynamic)[1] == 0 < same_convolutions(dynamic)[0]
    config = static.config
    assert_same_outputs(dynamic, static, torch.randn(2, config.in_chans, config.image_size, config.image_size))
