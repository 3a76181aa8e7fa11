"""Fine-tuning recipe options: batched augmentation and its policies, label smoothing, EMA, flip TTA, backbone
learning-rate scale, resize mode, and one end-to-end run with all of them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import usvcl_hf
from tests.helpers.stores import FINETUNE_CONFIG, make_labeled_store
from training import augment, finetune
from training.config import FinetuneConfig

SIZE = 24


def labeled_data(n: int = 6) -> finetune.LabeledData:
    """`n` random squares of side SIZE with alternating labels."""
    rng = np.random.default_rng(0)
    return finetune.LabeledData(
        squares=rng.random((n, SIZE, SIZE)).astype(np.float32), labels=np.arange(n) % 2,
        patient_ids=np.array([f"p{i}" for i in range(n)]), image_ids=np.array([str(i) for i in range(n)]),
        split_columns={},
    )


def collate(dataset: finetune.SquareDataset) -> dict[str, torch.Tensor]:
    """The whole dataset as one batch."""
    return torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])


def test_batched_augmentation_matches_the_per_frame_views_without_speckle() -> None:
    frames = torch.from_numpy(labeled_data().squares) * 255  # (6, S, S)
    config = augment.AugmentConfig(speckle_sigma=(0.0, 0.0))
    views = [augment.sample_view(SIZE, SIZE, np.random.default_rng(i), config) for i in range(len(frames))]
    batched = augment.augment_batch(frames / 255, augment.params_tensor(views), noise_seed=0) * 255  # (6, S, S)
    for frame, view, rendered in zip(frames, views, batched):
        single = augment.adjust_intensity(augment.render_view(frame, view, SIZE), view, torch.Generator())
        torch.testing.assert_close(rendered, single, atol=1e-3, rtol=1e-4)


def test_flip_policy_only_mirrors_and_strong_policy_changes_more_than_light() -> None:
    data = labeled_data()
    squares = torch.from_numpy(data.squares)
    processor = usvcl_hf.UsvclImageProcessor(image_size=SIZE, image_mean=[0.0], image_std=[1.0])
    changes = {}
    for name, policy in augment.AUGMENT_POLICIES.items():
        dataset = finetune.SquareDataset(data, np.arange(6), processor, True, seed=1, policy=policy)
        batch = collate(dataset)
        views = dataset.pixel_values(batch)[:, 0]  # (6, 1, S, S) -> (6, S, S)
        changes[name] = float((views - squares).abs().mean())
        if name == "flip":
            for view, square in zip(views, squares):
                assert torch.allclose(view, square, atol=1e-5) or torch.allclose(view, square.flip(-1), atol=1e-5)
    assert changes["flip"] < changes["light"] < changes["strong"]


def test_dataset_is_seeded_by_epoch_and_unaugmented_side_is_the_normalised_square() -> None:
    data = labeled_data()
    processor = usvcl_hf.UsvclImageProcessor(image_size=SIZE, image_mean=[0.4] * 3, image_std=[0.2] * 3,
                                                 in_chans=3)
    plain = finetune.SquareDataset(data, np.arange(6), processor, False, seed=0)
    expected = ((torch.from_numpy(data.squares) - 0.4) / 0.2)[:, None].expand(-1, 3, -1, -1)
    torch.testing.assert_close(plain.pixel_values(collate(plain)), expected)
    augmented = finetune.SquareDataset(data, np.arange(6), processor, True, seed=0)
    first, again = (augmented.pixel_values(collate(augmented)) for _ in range(2))
    augmented.set_epoch(1)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, augmented.pixel_values(collate(augmented)))


def test_label_smoothing_zero_is_the_models_loss_and_smoothing_penalises_confidence() -> None:
    logits, labels = torch.tensor([[4.0, -4.0], [-3.0, 3.0]]), torch.tensor([0, 1])
    weighted = finetune.classification_loss(logits, labels, [1.0, 3.0], 0.0)
    manual = -(torch.log_softmax(logits, -1)[[0, 1], [0, 1]] * torch.tensor([1.0, 3.0])).sum() / 4.0
    torch.testing.assert_close(weighted, manual)
    assert finetune.classification_loss(logits, labels, None, 0.1) > finetune.classification_loss(
        logits, labels, None, 0.0)


def test_backbone_learning_rate_scale_and_ema_average() -> None:
    config = FinetuneConfig(init="random", backbone="resnet10t", classifier_hidden_dim=8, learning_rate=1e-3,
                            backbone_lr_scale=0.1)
    model = finetune.build_classifier(config, SIZE, None)
    rates = sorted(group["lr"] for group in finetune.build_optimizer(config, model).param_groups)
    assert rates == pytest.approx([1e-4, 1e-3])
    assert finetune.make_ema(model, 0.0) is None
    ema = finetune.make_ema(model, 0.5)
    start = model.classifier[-1].weight.detach().clone()
    ema.update_parameters(model)  # first update copies
    with torch.no_grad():
        model.classifier[-1].weight.add_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module.classifier[-1].weight, start + 0.5)


def test_flip_tta_averages_the_image_and_its_mirror() -> None:
    data = labeled_data()
    processor = usvcl_hf.UsvclImageProcessor(image_size=SIZE)
    model = finetune.build_classifier(FinetuneConfig(init="random", backbone="resnet10t"), SIZE, None).eval()
    dataset = finetune.SquareDataset(data, np.arange(6), processor, False, 0)
    loader = finetune.make_loader(dataset, 4, None, 0)
    accelerator = Accelerator(cpu=True)
    plain = finetune.predict_logits(accelerator, model, loader, 6)
    both = finetune.predict_logits(accelerator, model, loader, 6, tta_flip=True)
    pixels = dataset.pixel_values(collate(dataset))  # (6, 1, S, S)
    with torch.no_grad():
        model.eval()  # predict_logits leaves the model in training mode
        mirrored = model(pixel_values=pixels.flip(-1)).logits.double().numpy()
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)


def test_new_head_starts_near_ln2() -> None:
    model = finetune.build_classifier(FinetuneConfig(init="random", backbone="resnet10t"), 64, [1.0, 1.0]).train()
    torch.manual_seed(0)
    output = model(pixel_values=torch.randn(16, 1, 64, 64), labels=torch.randint(0, 2, (16,)))
    assert abs(float(output.loss.detach()) - math.log(2)) < 0.05


def test_finetune_with_every_recipe_option(tmp_path) -> None:
    store = tmp_path / "labeled"
    make_labeled_store().save_to_disk(store)
    output_dir = tmp_path / "recipe"
    finetune.main(["--config", str(FINETUNE_CONFIG), "--store-path", str(store), "--output-dir", str(output_dir),
                   "--init", "random", "--backbone", "resnet10t", "--image-size", "32", "--folds", "1",
                   "--num-epochs", "2", "--resize-mode", "crop", "--augment-policy", "strong",
                   "--label-smoothing", "0.1", "--ema-decay", "0.9", "--tta-flip", "--backbone-lr-scale", "0.3"])
    results = json.loads((output_dir / "results.json").read_text())
    assert results["config"]["augment_policy"] == "strong" and results["config"]["ema_decay"] == 0.9
    assert np.isfinite(results["folds"][0]["val_auc"])
    processor = json.loads((output_dir / "final_model/preprocessor_config.json").read_text())
    assert processor["resize_mode"] == "crop"
    with pytest.raises(ValueError, match="augment_policy"):
        finetune.main(["--store-path", str(store), "--augment-policy", "wild", "--init", "random"])


def test_per_fold_pretrained_path_and_partial_predictions(tmp_path) -> None:
    config = FinetuneConfig(init="pretrained", pretrained_path="runs/pre_{fold}/model")
    assert finetune.for_fold(config, 3).pretrained_path == "runs/pre_3/model"
    assert finetune.for_fold(config, "all").pretrained_path == "runs/pre_all/model"
    assert finetune.for_fold(FinetuneConfig(init="random"), 3).pretrained_path is None
    for part in ("1", "all"):  # a fold's encoder and the final model's; fold 2 has none, so it must not be used
        model_config = usvcl_hf.UsvclConfig(backbone="resnet10t", image_size=32)
        usvcl_hf.UsvclForContrastivePretraining(model_config).save_pretrained(tmp_path / f"pre_{part}")
        usvcl_hf.UsvclImageProcessor(image_size=32).save_pretrained(tmp_path / f"pre_{part}")
    store = tmp_path / "labeled"
    make_labeled_store().save_to_disk(store)
    output_dir = tmp_path / "per_fold"
    finetune.main(["--config", str(FINETUNE_CONFIG), "--store-path", str(store), "--output-dir", str(output_dir),
                   "--pretrained-path", str(tmp_path / "pre_{fold}"), "--folds", "1"])
    assert (output_dir / "final_model/model.safetensors").exists()
    assert (output_dir / "predictions_done.csv").read_text() == (output_dir / "predictions.csv").read_text()


def test_mask_loss_matches_a_loop_reference_and_skips_rows_without_a_mask() -> None:
    torch.manual_seed(0)
    head = torch.nn.Conv2d(5, 1, kernel_size=1)
    feature_map = torch.randn(3, 5, 2, 3)  # (B, F, h, w)
    targets = torch.rand(3, 1, 2, 3)
    targets[1] = float("nan")  # row 1 has no mask
    logits = head(feature_map)
    terms = [
        -(t * torch.log(torch.sigmoid(x)) + (1 - t) * torch.log(1 - torch.sigmoid(x)))
        for row in (0, 2) for x, t in zip(logits[row].flatten(), targets[row].flatten())
    ]
    torch.testing.assert_close(finetune.mask_loss(head, feature_map, targets), torch.stack(terms).mean())
    none_known = finetune.mask_loss(head, feature_map, torch.full_like(targets, float("nan")))
    assert none_known.item() == 0.0 and none_known.requires_grad


def test_mask_targets_follow_the_image_views() -> None:
    data = labeled_data()
    data.masks = data.squares.copy()  # a "mask" equal to its image: its targets must be the pooled image view
    processor = usvcl_hf.UsvclImageProcessor(image_size=SIZE, image_mean=[0.0], image_std=[1.0])
    dataset = finetune.SquareDataset(data, np.arange(6), processor, True, seed=0,
                                     policy=augment.AUGMENT_POLICIES["flip"])
    batch = collate(dataset)
    views = dataset.pixel_values(batch)[:, :1]  # (B, 1, S, S), flips only: no intensity change
    targets = dataset.mask_targets(batch, (4, 4))
    torch.testing.assert_close(targets, torch.nn.functional.adaptive_avg_pool2d(views, (4, 4)), atol=1e-5, rtol=0)
    assert bool(batch["views"][:, augment.PARAM_NAMES.index("flip")].any())  # some were mirrored


def test_finetune_with_the_lesion_mask_loss(tmp_path) -> None:
    from tests.helpers.lesion_fixtures import make_masked_store

    store = tmp_path / "masked"
    make_masked_store().save_to_disk(store)
    output_dir = tmp_path / "masked_run"
    args = ["--config", str(FINETUNE_CONFIG), "--store-path", str(store), "--init", "random", "--backbone",
            "resnet10t", "--image-size", "32", "--folds", "1", "--num-epochs", "1", "--no-final-model"]
    finetune.main([*args, "--output-dir", str(output_dir), "--mask-loss-weight", "0.5"])
    results = json.loads((output_dir / "results.json").read_text())
    assert results["config"]["mask_loss_weight"] == 0.5 and np.isfinite(results["folds"][0]["val_auc"])
    unmasked = tmp_path / "unmasked"
    make_labeled_store().save_to_disk(unmasked)
    with pytest.raises(ValueError, match="needs column 'mask'"):
        finetune.main([*args[:2], "--store-path", str(unmasked), *args[4:], "--output-dir", str(tmp_path / "x"),
                       "--mask-loss-weight", "0.5"])
    with pytest.raises(ValueError, match="mask_loss_weight"):
        finetune.main([*args, "--output-dir", str(tmp_path / "y"), "--mask-loss-weight", "-1"])
