"""The lesion segmenter: config checks, shapes, loss, masks at the input's size, Hub loading in a clean process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.clean_process import run_isolated
from tests.helpers.demo_fixtures import TINY_LESION_MODEL, save_tiny_lesion_model
from usvcl_hf import LesionConfig, LesionSegmentationModel, UsvclImageProcessor
from usvcl_hf.losses_lesion import segmentation_loss, soft_dice_loss
from usvcl_hf.runtime.lesion import draw_outline, frame_lesion_probabilities, lesion_masks, outline

SIZE = 64


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(backbone="no_such_net"), "timm architecture"),
        (dict(presence_score="area"), "presence_score"),
        (dict(decoder_channels=[]), "decoder_channels"),
        (dict(decoder_channels=[8, 0]), "decoder_channels"),
        (dict(lesion_threshold=1.5), "lesion_threshold"),
        (dict(mask_threshold=-0.1), "mask_threshold"),
        (dict(dice_weight=-1.0), "dice_weight"),
        (dict(in_chans=2), "in_chans"),
        (dict(image_size=8), "image_size"),
        (dict(resize_mode="stretch"), "resize_mode"),
    ],
)
def test_config_rejects_bad_values(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        LesionConfig(**bad)


def test_too_many_decoder_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 4 blocks"):
        LesionSegmentationModel(LesionConfig(backbone="test_efficientnet", decoder_channels=[8] * 5))


@pytest.mark.parametrize("presence_score", ["max_pixel", "head"])
def test_forward_shapes_and_presence_definition(presence_score) -> None:
    torch.manual_seed(0)
    model = LesionSegmentationModel(LesionConfig(**TINY_LESION_MODEL, presence_score=presence_score)).eval()
    pixels = torch.randn(3, 1, SIZE, SIZE)
    with torch.no_grad():
        output = model(pixels)
        as_tuple = model(pixels, return_dict=False)
    assert output.logits.shape == (3, 1, SIZE, SIZE) and output.loss is None
    assert output.lesion_probability.shape == (3,) and output.presence_logits.shape == (3,)
    expected = (torch.sigmoid(output.presence_logits) if presence_score == "head"
                else torch.sigmoid(output.logits).amax(dim=(1, 2, 3)))
    torch.testing.assert_close(output.lesion_probability, expected)
    torch.testing.assert_close(as_tuple[0], output.logits)


def test_loss_is_dice_plus_bce_plus_presence_and_trains() -> None:
    torch.manual_seed(0)
    model = LesionSegmentationModel(LesionConfig(**TINY_LESION_MODEL))
    pixels = torch.randn(2, 1, SIZE, SIZE)
    labels = torch.zeros(2, SIZE, SIZE)
    labels[0, 20:40, 20:40] = 1.0  # one image with a lesion, one lesion-free
    output = model(pixels, labels=labels)
    expected = segmentation_loss(output.logits, output.presence_logits, labels[:, None], 1.0, 1.0, 0.2)
    torch.testing.assert_close(output.loss, expected)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = output.loss.item()
    for _ in range(15):
        loss = model(pixels, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def test_soft_dice_values() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :2] = 1.0
    confident = torch.where(target > 0, 20.0, -20.0)
    assert soft_dice_loss(confident, target).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(-confident, target).item() == pytest.approx(1 - 1 / 17, abs=1e-3)  # (0+1)/(12+4+1)
    empty = torch.zeros(1, 1, 4, 4)
    assert soft_dice_loss(torch.full_like(empty, -20.0), empty).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        segmentation_loss(confident, torch.zeros(1), torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize("resize_mode", ["pad", "crop"])
def test_post_process_returns_masks_at_the_input_size(resize_mode) -> None:
    processor = UsvclImageProcessor(image_size=SIZE, resize_mode=resize_mode)
    frame = np.zeros((40, 96), dtype=np.float32)
    frame[10:30, 40:60] = 1.0
    square = processor(frame, return_tensors="pt")["pixel_values"][:, :1]  # (1, 1, S, S), normalised
    logits = torch.where(square > 0.0, 10.0, -10.0)  # "lesion" = the bright pixels
    (mask,) = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[frame.shape])
    assert mask.shape == frame.shape and mask.dtype == torch.int64
    assert (mask.numpy().astype(bool) == (frame > 0)).mean() > 0.97
    (square_mask,) = processor.post_process_semantic_segmentation({"logits": logits})
    assert square_mask.shape == (SIZE, SIZE)
    with pytest.raises(ValueError, match="target_sizes"):
        processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(4, 4), (4, 4)])


def test_inference_helpers_on_frames_of_different_sizes(tmp_path) -> None:
    from usvcl_hf.runtime.lesion import load_lesion_model

    model, processor = load_lesion_model(save_tiny_lesion_model(tmp_path / "lesion"))
    frames = [np.full((30, 50), 90, np.uint8), np.full((64, 40), 30, np.uint8), np.zeros((20, 20), np.uint8)]
    probabilities = frame_lesion_probabilities(model, processor, frames, batch_size=2)
    assert probabilities.shape == (3,) and np.all((probabilities >= 0) & (probabilities <= 1))
    with torch.no_grad():
        expected = model(processor(frames[1], return_tensors="pt")["pixel_values"]).lesion_probability
    assert probabilities[1] == pytest.approx(float(expected), abs=1e-6)
    masks = lesion_masks(model, processor, frames)
    assert [mask.shape for mask in masks] == [frame.shape for frame in frames]
    with pytest.raises(ValueError, match="not a lesion segmenter"):
        from tests.helpers.demo_fixtures import save_tiny_classifier

        load_lesion_model(save_tiny_classifier(tmp_path / "classifier"))


def test_outline_is_the_mask_boundary() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:15, 10:20] = True
    band = outline(mask)
    assert band[5, 12] and band[4, 12] and not band[10, 15] and not band[0, 0]
    drawn = draw_outline(np.full((20, 30), 100, np.uint8), mask)
    assert drawn.shape == (20, 30, 3) and tuple(drawn[5, 12]) == (0, 255, 0) and tuple(drawn[10, 15]) == (100,) * 3
    with pytest.raises(ValueError, match="shape"):
        draw_outline(np.zeros((10, 10), np.uint8), mask)


def test_hub_folder_loads_in_a_clean_offline_process(tmp_path) -> None:
    folder = save_tiny_lesion_model(tmp_path / "lesion")
    image = np.random.default_rng(0).integers(0, 255, (48, 80), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "frame.png")
    model = LesionSegmentationModel.from_pretrained(folder).eval()
    processor = UsvclImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        expected = model(processor(image, return_tensors="pt")["pixel_values"])
    result = run_isolated(
        f"""
        import torch, PIL.Image
        from transformers import AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation, pipeline
        folder = {str(folder)!r}
        image = PIL.Image.open({str(tmp_path / "frame.png")!r})
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            output = model(processor(image, return_tensors="pt")["pixel_values"])
        masks = processor.post_process_semantic_segmentation(output, target_sizes=[(image.height, image.width)])
        segments = pipeline("image-segmentation", model=folder, trust_remote_code=True)(image)
        result = dict(logits=output.logits.tolist(), presence=output.lesion_probability.tolist(),
                      mask_shape=list(masks[0].shape), module=type(model).__module__, base=type(base).__name__,
                      labels=sorted(segment["label"] for segment in segments),
                      sizes=[list(segment["mask"].size) for segment in segments])
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in result["module"] and result["base"] == "LesionSegmentationModel"
    torch.testing.assert_close(torch.tensor(result["logits"]), expected.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(result["presence"]), expected.lesion_probability, rtol=0, atol=1e-5)
    assert result["mask_shape"] == [48, 80]
    assert set(result["labels"]) <= {"background", "lesion"} and result["labels"]
    assert all(size == [80, 48] for size in result["sizes"])
