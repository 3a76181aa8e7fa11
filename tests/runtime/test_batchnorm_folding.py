"""BatchNorm folding (usvcl_hf/runtime/batchnorm_folding.py): the folded model gives the same outputs without
BatchNorms, for classifiers over backbones and for the lesion segmenter; unsafe folds are refused; the loaders fold
by default."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers.utils import ModelOutput

from tests.helpers.demo_fixtures import (
    TINY_CLASSIFIER,
    TINY_LESION_MODEL,
    assert_same_outputs,
    save_tiny_classifier,
    save_tiny_lesion_model,
)
from usvcl_hf import LesionConfig, LesionSegmentationModel, UsvclConfig, UsvclForImageClassification
from usvcl_hf.runtime.batchnorm_folding import conv_batchnorm_pairs, example_input, fold_batchnorms
from usvcl_hf.runtime.clip_prediction import load_model
from usvcl_hf.runtime.lesion import load_lesion_model


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` in eval mode with random BatchNorm statistics and affine parameters (a fresh model's are 0/1)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.2)
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


@pytest.mark.parametrize("backbone", ["resnet18", "test_efficientnet", "tf_efficientnet_lite0"])
def test_classifier_folds_every_batchnorm_and_keeps_its_outputs(backbone):
    torch.manual_seed(0)
    config = UsvclConfig(**{**TINY_CLASSIFIER, "backbone": backbone})
    model = with_random_statistics(UsvclForImageClassification(config))
    count = batchnorms(model)
    folded, folded_count = fold_batchnorms(model, example_input(config))
    assert folded_count == count > 0
    assert batchnorms(folded) == 0
    assert batchnorms(model) == count, "the original model is left as it was"
    assert_same_outputs(model, folded, torch.randn(3, config.in_chans, config.image_size, config.image_size))


def test_lesion_model_folds_encoder_and_decoder_batchnorms():
    torch.manual_seed(0)
    config = LesionConfig(**TINY_LESION_MODEL)
    model = with_random_statistics(LesionSegmentationModel(config))
    folded, folded_count = fold_batchnorms(model, example_input(config))
    assert folded_count == batchnorms(model) and batchnorms(folded) == 0
    assert_same_outputs(model, folded, torch.randn(2, config.in_chans, config.image_size, config.image_size))


@dataclass
class ToyOutput(ModelOutput):
    logits: torch.Tensor | None = None


class ConvUsedTwice(nn.Module):
    """conv -> BatchNorm, plus the conv's raw output as a skip: folding the pair would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, pixel_values: torch.Tensor) -> ToyOutput:
        features = self.conv(pixel_values)  # (B, 4, H, W)
        return ToyOutput(logits=self.norm(features) + features)


def test_a_fold_that_changes_the_outputs_is_refused(caplog):
    model = with_random_statistics(ConvUsedTwice())
    example = torch.randn(1, 1, 8, 8)
    assert conv_batchnorm_pairs(model, example) == [("conv", "norm")]
    with caplog.at_level(logging.WARNING, logger="usvcl_hf.runtime.batchnorm_folding"):
        folded, count = fold_batchnorms(model, example)
    assert folded is model and count == 0 and batchnorms(model) == 1
    assert "changed ConvUsedTwice's outputs" in caplog.text


def test_batchnorm_not_fed_by_a_convolution_is_left_alone():
    model = nn.Module()
    model.norm, model.conv = nn.BatchNorm2d(1), nn.Conv2d(1, 2, 1)
    model.forward = lambda pixel_values: ToyOutput(logits=model.conv(model.norm(pixel_values)))
    assert conv_batchnorm_pairs(with_random_statistics(model), torch.randn(1, 1, 4, 4)) == []


def test_training_mode_is_refused():
    model = UsvclForImageClassification(UsvclConfig(**TINY_CLASSIFIER)).train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorms(model, example_input(model.config))


@pytest.mark.parametrize(("save", "load"), [(save_tiny_classifier, load_model),
                                            (save_tiny_lesion_model, load_lesion_model)])
def test_loaders_fold_by_default_and_not_on_request(tmp_path, save, load):
    folder = save(tmp_path / "model")
    folded, _ = load(folder)
    plain, _ = load(folder, fold_batchnorm=False)
    assert batchnorms(folded) == 0 < batchnorms(plain)
    assert not folded.training and not plain.training
    config = plain.config
    assert_same_outputs(plain, folded, torch.randn(2, config.in_chans, config.image_size, config.image_size))
