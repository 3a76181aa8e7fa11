"""usvcl models: shapes, weight init, freezing, checkpoint transfer and the offline Hub round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import timm
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from tests.helpers.clean_process import run_isolated
from usvcl_hf import (
    UsvclConfig,
    UsvclForContrastivePretraining,
    UsvclForImageClassification,
    UsvclImageProcessor,
    UsvclModel,
)

DENSENETS = ("densenet121", "densenet169", "densenet201")
OTHER_CNNS = ("resnet18", "efficientnet_b0", "mobilenetv3_small_100")
SMALL_SIZE = 32


def _inputs(size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "bad",
    [
        dict(backbone="not_a_timm_model"),
        dict(loss="contrastive"),
        dict(positive_reduction="max"),
        dict(clip_aggregation="vote"),
        dict(margin=-0.1),
        dict(num_hard_positives=0),
        dict(in_chans=2),
        dict(class_weights=[1.0]),
        dict(decision_threshold=1.5),
        dict(calibration_bias=float("nan")),
        dict(calibration_bias=0.5, num_labels=3),
    ],
)
def test_config_rejects_impossible_values(bad: dict) -> None:
    with pytest.raises(ValueError, match="must"):
        UsvclConfig(**bad)


def test_config_defaults_are_the_papers() -> None:
    config = UsvclConfig()
    assert (config.backbone, config.in_chans, config.image_size) == ("densenet121", 1, 224)
    assert (config.margin, config.num_hard_positives, config.num_hard_negatives) == (0.5, 3, 12)
    assert (config.num_positives, config.num_negatives) == (16, 111)
    assert config.id2label == {0: "benign", 1: "malignant"}


@pytest.mark.parametrize("backbone", DENSENETS + OTHER_CNNS)
def test_every_backbone_builds_and_round_trips(backbone: str, tmp_path: Path, tiny_config_kwargs: dict) -> None:
    config = UsvclConfig(**{**tiny_config_kwargs, "backbone": backbone})
    model = UsvclForImageClassification(config).eval()
    pixels = _inputs(SMALL_SIZE)
    output = model(pixels, labels=torch.tensor([0, 1]))
    assert output.logits.shape == (2, 2) and output.loss.ndim == 0
    assert output.embeddings.shape == (2, 16)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    # bit-exact at the default thread count; with OMP_NUM_THREADS=1 oneDNN may round a reloaded copy's convolutions
    # differently in the last bits (seen: 1.4e-9 on densenet121), which says nothing about the round trip
    torch.testing.assert_close(reloaded(pixels).logits, output.logits, rtol=0, atol=1e-7)


def test_embeddings_are_normalised(tiny_config_kwargs: dict) -> None:
    output = UsvclModel(UsvclConfig(**tiny_config_kwargs)).eval()(_inputs(SMALL_SIZE))
    torch.testing.assert_close(output.embeddings.norm(dim=-1), torch.ones(2))
    assert output.pooler_output.shape == (2, 512)
    assert output.last_hidden_state.shape[:2] == (2, 512)


def test_contrastive_forward_shapes_and_backward(tiny_config_kwargs: dict) -> None:
    model = UsvclForContrastivePretraining(UsvclConfig(**tiny_config_kwargs))
    pixels = torch.randn(2, 1 + 2 + 3, 1, SMALL_SIZE, SMALL_SIZE)  # (B, 1+P+N, C, H, W)
    output = model(pixels)
    assert output.anchor_embeddings.shape == (2, 16)
    assert output.positive_embeddings.shape == (2, 2, 16)
    assert output.negative_embeddings.shape == (2, 3, 16)
    output.loss.backward()
    assert model.usvcl.backbone.conv1.weight.grad is not None


@pytest.mark.parametrize("loss", ["hard_triplet", "info_nce"])
def test_shared_negative_pool_equals_per_row_negatives(loss: str, tiny_config_kwargs: dict) -> None:
    torch.manual_seed(0)
    model = UsvclForContrastivePretraining(UsvclConfig(**{**tiny_config_kwargs, "loss": loss})).eval()
    rows = torch.randn(2, 3, 1, SMALL_SIZE, SMALL_SIZE)  # (B, 1+P, C, H, W)
    pool = torch.randn(4, 1, SMALL_SIZE, SMALL_SIZE)  # (M, C, H, W)
    mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    shared = model(rows, negative_pixel_values=pool, negative_mask=mask).loss
    per_row = [model(torch.cat([rows[b], pool[mask[b]]])[None], num_positives=2).loss for b in range(2)]
    # hard_triplet averages over all (anchor, hard negative) pairs; both rows have 3 valid negatives here
    torch.testing.assert_close(shared, torch.stack(per_row).mean(), rtol=1e-4, atol=1e-5)


def test_too_few_frames_is_a_clear_error(tiny_config_kwargs: dict) -> None:
    model = UsvclForContrastivePretraining(UsvclConfig(**tiny_config_kwargs))
    with pytest.raises(ValueError, match="1\\+P\\+N"):
        model(torch.randn(1, 3, 1, SMALL_SIZE, SMALL_SIZE))


def test_init_keeps_timm_backbone_and_initialises_heads(tiny_config_kwargs: dict) -> None:
    config = UsvclConfig(**tiny_config_kwargs)
    torch.manual_seed(123)
    reference = timm.create_model(config.backbone, pretrained=False, num_classes=0, in_chans=1)
    torch.manual_seed(123)
    model = UsvclForImageClassification(config)
    for (name, expected), actual in zip(reference.state_dict().items(), model.usvcl.backbone.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    head = model.classifier[1]
    assert abs(head.weight.std().item() - config.initializer_range) < 0.01
    assert torch.count_nonzero(head.bias) == 0


def test_contrastive_checkpoint_transfers_into_classifier(tmp_path: Path, tiny_config_kwargs: dict) -> None:
    pretrained = UsvclForContrastivePretraining(UsvclConfig(**tiny_config_kwargs))
    with torch.no_grad():
        for parameter in pretrained.parameters():
            parameter.add_(0.01)  # distinguishable from any fresh init
    pretrained.save_pretrained(tmp_path)
    classifier = UsvclForImageClassification.from_pretrained(tmp_path)
    for key, value in pretrained.usvcl.state_dict().items():
        torch.testing.assert_close(classifier.usvcl.state_dict()[key], value, rtol=0, atol=0, msg=key)
    head = classifier.classifier[1]
    assert torch.count_nonzero(head.bias) == 0 and head.weight.std().item() < 0.05


@pytest.mark.parametrize(("trainable_layers", "expect_conv1", "expect_layer4"), [(-1, True, True), (0, False, False),
                                                                                  (1, False, True)])
def test_trainable_layers(trainable_layers: int, expect_conv1: bool, expect_layer4: bool, tiny_config_kwargs) -> None:
    model = UsvclModel(UsvclConfig(**tiny_config_kwargs))
    model.set_trainable_layers(trainable_layers)
    assert model.backbone.conv1.weight.requires_grad is expect_conv1
    assert model.backbone.layer4[0].conv1.weight.requires_grad is expect_layer4
    assert all(p.requires_grad for p in model.projection.parameters())


def test_calibration_temperature_and_bias_scale_logits(tiny_config_kwargs: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = UsvclForImageClassification(UsvclConfig(**tiny_config_kwargs)).eval()
    pixels = _inputs(SMALL_SIZE)
    raw = model(pixels).logits
    model.config.calibration_temperature = 2.0
    torch.testing.assert_close(model(pixels).logits, raw / 2.0)
    model.config.calibration_bias = -0.7  # Platt scaling: the bias moves the malignant logit only
    output = model(pixels)
    torch.testing.assert_close(output.calibrated_logits, raw / 2.0 + torch.tensor([0.0, -0.7]))
    torch.testing.assert_close(output.calibrated_logits.softmax(1)[:, 1],
                               torch.sigmoid((raw[:, 1] - raw[:, 0]) / 2.0 - 0.7))


def test_auto_classes_in_process(tmp_path: Path, tiny_config_kwargs: dict) -> None:
    model = UsvclForImageClassification(UsvclConfig(**tiny_config_kwargs))
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), UsvclConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), UsvclModel)
    for name in ("configuration_usvcl.py", "modeling_usvcl.py", "losses.py", "model.safetensors", "config.json"):
        assert (tmp_path / name).exists(), name


def test_offline_hub_round_trip_in_clean_process(tmp_path: Path, tiny_config_kwargs: dict) -> None:
    torch.manual_seed(0)
    folder = tmp_path / "hub"
    model = UsvclForImageClassification(UsvclConfig(**tiny_config_kwargs)).eval()
    processor = UsvclImageProcessor(image_size=tiny_config_kwargs["image_size"])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8))
    image_path = tmp_path / "image.png"
    image.save(image_path)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixels)
    result = run_isolated(
        f"""
        import torch, PIL.Image
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
        folder = {str(folder)!r}
        image = PIL.Image.open({str(image_path)!r})
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        pixels = processor(image, return_tensors="pt")["pixel_values"]
        classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = classifier(pixels).logits
            embeddings = encoder(pixels).embeddings
        predictions = pipeline("image-classification", model=folder, trust_remote_code=True)(image)
        result = dict(pixels=pixels.tolist(), logits=logits.tolist(), embeddings=embeddings.tolist(),
                      predictions=predictions, module=type(classifier).__module__)
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in result["module"]
    torch.testing.assert_close(torch.tensor(result["pixels"]), pixels, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(result["logits"]), expected.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(result["embeddings"]), expected.embeddings, rtol=0, atol=1e-6)
    labels = {prediction["label"] for prediction in result["predictions"]}
    assert labels == {"benign", "malignant"}
    assert sum(prediction["score"] for prediction in result["predictions"]) == pytest.approx(1.0, abs=1e-5)


def test_return_dict_false_gives_tuples(tiny_config_kwargs: dict) -> None:
    torch.manual_seed(0)
    config = UsvclConfig(**tiny_config_kwargs)
    classifier = UsvclForImageClassification(config).eval()
    pixels = torch.randn(2, 1, config.image_size, config.image_size)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        as_dict = classifier(pixels, labels=labels)
        as_tuple = classifier(pixels, labels=labels, return_dict=False)
        encoder_tuple = classifier.usvcl(pixels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert isinstance(encoder_tuple, tuple) and encoder_tuple[0].shape == (2, config.embedding_dim)
    config.return_dict = False  # the config's default is honoured too
    with torch.no_grad():
        assert isinstance(classifier(pixels), tuple)
    pretraining = UsvclForContrastivePretraining(UsvclConfig(**tiny_config_kwargs, return_dict=False)).eval()
    frames = torch.randn(2, 1 + config.num_positives + config.num_negatives, 1, config.image_size, config.image_size)
    with torch.no_grad():
        loss, anchors, *_ = pretraining(frames)
    assert loss.ndim == 0 and anchors.shape == (2, config.embedding_dim)
