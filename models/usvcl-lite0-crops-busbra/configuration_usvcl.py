"""Configuration of the usvcl models: a timm CNN backbone, a projection head and a classifier head."""

from __future__ import annotations

import math

import timm
from transformers import PretrainedConfig

# A config is a leaf: it imports nothing of this package, so a folder ships only the files its model uses.
RESIZE_MODES = ("pad", "crop")  # the image processor's (image_processing_usvcl.RESIZE_MODES, equal by a test)
POSITIVE_REDUCTIONS = ("mean_embedding", "mean_distance")  # how `losses.hard_triplet_loss` forms the positive
LOSSES = ("hard_triplet", "info_nce")
CLIP_AGGREGATIONS = ("mean_probability", "max_probability", "median_probability", "mean_logit", "top_k_mean")
DEFAULT_ID2LABEL = {0: "benign", 1: "malignant"}
POSITIVE_LABEL = "malignant"  # the class `decision_threshold` is about
TWO_VIEW_ROLES = ("lesion_model", "crop_model")  # the companions `two_view_models` names
AUTO_MAP = {
    "AutoConfig": "configuration_usvcl.UsvclConfig",
    "AutoModel": "modeling_usvcl.UsvclModel",
    "AutoModelForImageClassification": "modeling_usvcl.UsvclForImageClassification",
    "AutoModelForPreTraining": "modeling_usvcl.UsvclForContrastivePretraining",
    "AutoImageProcessor": "image_processing_usvcl.UsvclImageProcessor",
}


def _require(condition: bool, message: str) -> None:
    """Raise a `ValueError` with `message` unless `condition` holds."""
    if not condition:
        raise ValueError(message)


def _require_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a `ValueError` naming the allowed values unless `value` is one of them."""
    _require(value in allowed, f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def positive_label_id(label2id: dict | None) -> int:
    """Index of the positive class (`POSITIVE_LABEL`, else 1) that `decision_threshold` is about."""
    indices = {str(name): int(index) for name, index in (label2id or {}).items()}
    return indices.get(POSITIVE_LABEL, 1)


class UsvclConfig(PretrainedConfig):
    r"""
    Configuration for [`UsvclModel`], [`UsvclForContrastivePretraining`] and [`UsvclForImageClassification`].

    Args:
        backbone (`str`, defaults to `"densenet121"`):
            Any timm architecture name (`timm.list_models()`); built with `pretrained=False` unless
            `init_from_imagenet` is set.
        in_chans (`int`, defaults to 1): input channels (ultrasound is greyscale).
        image_size (`int`, defaults to 224): side of the square input the image processor produces.
        resize_mode (`str`, defaults to `"pad"`): `"pad"` letterboxes the whole image, `"crop"` resizes the shorter
            side and centre-crops. Neither stretches.
        embedding_dim (`int`, defaults to 128): size of the L2-normalised projection output.
        projection_hidden_dim (`int`, defaults to 512): hidden width of the projection MLP (0 = one linear layer).
        loss (`str`, defaults to `"hard_triplet"`): `"hard_triplet"` or `"info_nce"`.
        margin (`float`, defaults to 0.5): triplet margin on the distance `1 - cos`.
        num_hard_positives (`int`, defaults to 3): farthest positives averaged into the positive prototype.
        num_hard_negatives (`int`, defaults to 12): closest negatives pushed away.
        positive_reduction (`str`, defaults to `"mean_embedding"`): `"mean_embedding"` (paper text) or
            `"mean_distance"` (authors' code).
        temperature (`float`, defaults to 0.1): InfoNCE temperature.
        num_positives (`int`, defaults to 16): P, positives per anchor in contrastive input.
        num_negatives (`int`, defaults to 111): N, negatives per anchor in contrastive input.
        classifier_hidden_dim (`int`, defaults to 256): hidden width of the classifier head (0 = linear).
        classifier_dropout (`float`, defaults to 0.2): dropout in the classifier head.
        class_weights (`list[float]`, *optional*): cross-entropy class weights (class imbalance).
        trainable_layers (`int`, defaults to -1): how many of the backbone's last stages fine-tuning unfreezes;
            -1 = all, 0 = backbone frozen (linear probe).
        clip_aggregation (`str`, defaults to `"mean_probability"`): how frame probabilities become one clip
            probability, one of `CLIP_AGGREGATIONS`.
        clip_top_k (`int`, defaults to 3): frames averaged by `"top_k_mean"`.
        calibration_temperature (`float`, defaults to 1.0): logits are divided by it (temperature scaling).
        calibration_bias (`float`, defaults to 0.0): added to the positive (malignant) class's logit after the
            division, so that `P(malignant) = sigmoid((z_pos - z_neg) / calibration_temperature + calibration_bias)`
            (Platt scaling of the logit difference). It removes the prior shift of a class-weighted loss, which a
            temperature alone cannot; models exported before it existed load with 0 (temperature scaling only).
        decision_threshold (`float`, defaults to 0.5): malignancy probability at and above which a case is called
            positive (chosen by cross-validation, never on a test fold).
        threshold_in_logits (`bool`, defaults to `False`): add the decision offset
            `b = log((1 - decision_threshold) / decision_threshold)` to the positive (malignant) class's logit, so
            that `argmax(logits)` is the calibrated decision `P(malignant) >= decision_threshold` at every door that
            ranks labels by the logits (`pipeline("image-classification")` included); `calibrated_logits` keep the
            calibrated scores. `training.export` sets it; models exported before it existed load with `False`
            (their logits are unchanged).
        ood_components (`int`, defaults to 0): principal directions of the Gaussian model of the training images'
            pooled features that gives the out-of-distribution score (`UsvclFeatureDensity`); 0 = no score. Set,
            with the statistics, by `python -m training.export.ood`.
        ood_threshold (`float`, *optional*): out-of-distribution score above which an input is flagged as unlike
            the training images (chosen on held-out BUS-BRA patients by `training.export.ood`).
        lesion_crop_margin (`float`, *optional*): set when the classifier was trained on lesion crops: it expects
            a lesion's bounding box grown by this share of its width / height on each side
            (`usvcl_hf.lesion_crop.crop_to_box`; the box from a lesion segmenter), not a whole image. None = whole
            images.
        two_view_models (`dict[str, str]`, *optional*): for a whole-image classifier, the Hub ids of its two-view
            companions, `{"lesion_model": ..., "crop_model": ...}` (a lesion segmenter and a lesion-crop
            classifier), which the `usvcl-two-views` pipeline (`pipeline_usvcl.py`) loads beside it.
        init_from_imagenet (`bool`, defaults to `False`): ask timm for ImageNet weights (needs the network).
    """

    model_type = "usvcl"

    backbone: str = "densenet121"
    in_chans: int = 1
    image_size: int = 224
    resize_mode: str = "pad"
    embedding_dim: int = 128
    projection_hidden_dim: int = 512
    loss: str = "hard_triplet"
    margin: float = 0.5
    num_hard_positives: int = 3
    num_hard_negatives: int = 12
    positive_reduction: str = "mean_embedding"
    temperature: float = 0.1
    num_positives: int = 16
    num_negatives: int = 111
    classifier_hidden_dim: int = 256
    classifier_dropout: float = 0.2
    class_weights: list[float] | None = None
    trainable_layers: int = -1
    clip_aggregation: str = "mean_probability"
    clip_top_k: int = 3
    calibration_temperature: float = 1.0
    calibration_bias: float = 0.0
    decision_threshold: float = 0.5
    threshold_in_logits: bool = False
    ood_components: int = 0
    ood_threshold: float | None = None
    lesion_crop_margin: float | None = None
    two_view_models: dict[str, str] | None = None
    init_from_imagenet: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        """Default labels benign/malignant, then check every field."""
        if self.id2label is None and kwargs.get("num_labels") in (None, len(DEFAULT_ID2LABEL)):
            self.id2label = dict(DEFAULT_ID2LABEL)
            self.label2id = {name: index for index, name in DEFAULT_ID2LABEL.items()}
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)  # every Auto class finds its usvcl class in a saved folder
        self.validate_usvcl()

    def validate_usvcl(self) -> None:
        """Check every field; raise a `ValueError` that says what is allowed."""
        _require(
            timm.is_model(self.backbone),
            f"`backbone` must be a timm architecture name (see `timm.list_models()`, e.g. 'densenet121', "
            f"'densenet169', 'densenet201', 'resnet18'), got {self.backbone!r}.",
        )
        _require_choice("loss", self.loss, LOSSES)
        _require_choice("positive_reduction", self.positive_reduction, POSITIVE_REDUCTIONS)
        _require_choice("clip_aggregation", self.clip_aggregation, CLIP_AGGREGATIONS)
        _require_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        _require(self.in_chans in (1, 3), f"`in_chans` must be 1 (greyscale) or 3, got {self.in_chans}.")
        _require(self.image_size >= 16, f"`image_size` must be at least 16 pixels, got {self.image_size}.")
        _require(self.embedding_dim >= 1, f"`embedding_dim` must be positive, got {self.embedding_dim}.")
        _require(self.projection_hidden_dim >= 0, "`projection_hidden_dim` must be >= 0 (0 = linear projection).")
        _require(self.classifier_hidden_dim >= 0, "`classifier_hidden_dim` must be >= 0 (0 = linear classifier).")
        _require(0.0 <= self.classifier_dropout < 1.0, "`classifier_dropout` must be in [0, 1).")
        _require(self.margin >= 0.0, f"`margin` must be >= 0, got {self.margin}.")
        _require(self.temperature > 0.0, f"`temperature` must be > 0, got {self.temperature}.")
        _require(self.calibration_temperature > 0.0, "`calibration_temperature` must be > 0.")
        _require(math.isfinite(self.calibration_bias),
                 f"`calibration_bias` must be a finite number, got {self.calibration_bias}.")
        if self.calibration_bias:
            _require(self.num_labels == 2, "`calibration_bias` must be 0 unless the model is binary (num_labels=2).")
        _require(0.0 <= self.decision_threshold <= 1.0, "`decision_threshold` must be in [0, 1].")
        if self.threshold_in_logits:
            _require(self.num_labels == 2, "`threshold_in_logits` needs a binary model (num_labels=2).")
            _require(
                0.0 < self.decision_threshold < 1.0,
                "`threshold_in_logits` needs 0 < `decision_threshold` < 1 (its log-odds must be finite), "
                f"got {self.decision_threshold}.",
            )
        _require(self.ood_components >= 0, f"`ood_components` must be >= 0 (0 = no score), got {self.ood_components}.")
        if self.ood_threshold is not None:
            _require(self.ood_components > 0, "`ood_threshold` needs `ood_components` > 0 (the statistics).")
            _require(self.ood_threshold > 0.0, f"`ood_threshold` must be > 0, got {self.ood_threshold}.")
        if self.lesion_crop_margin is not None:
            _require(self.lesion_crop_margin >= 0.0,
                     f"`lesion_crop_margin` must be >= 0 (None = whole images), got {self.lesion_crop_margin}.")
        if self.two_view_models is not None:
            _require(set(self.two_view_models) == set(TWO_VIEW_ROLES) and all(
                isinstance(name, str) and name for name in self.two_view_models.values()),
                f"`two_view_models` must name {' and '.join(TWO_VIEW_ROLES)} (Hub ids), got {self.two_view_models}.")
        for name in ("num_hard_positives", "num_hard_negatives", "num_positives", "num_negatives", "clip_top_k"):
            _require(getattr(self, name) >= 1, f"`{name}` must be >= 1, got {getattr(self, name)}.")
        _require(self.trainable_layers >= -1, "`trainable_layers` must be -1 (all), 0 (frozen) or a stage count.")
        _require(self.num_labels >= 2, f"`num_labels` must be >= 2, got {self.num_labels}.")
        if self.class_weights is not None:
            _require(
                len(self.class_weights) == self.num_labels and all(w > 0 for w in self.class_weights),
                f"`class_weights` must hold {self.num_labels} positive numbers, got {self.class_weights}.",
            )

    def calibration_offset(self) -> list[float]:
        """Per-class logit offset `(num_labels,)` added after temperature scaling: `calibration_bias` on the positive
        class, zeros elsewhere."""
        offset = [0.0] * self.num_labels
        offset[positive_label_id(self.label2id)] = float(self.calibration_bias)
        return offset

    def decision_offset(self) -> list[float]:
        """Per-class logit offset `(num_labels,)`: `log((1 - t) / t)` on the positive class when
        `threshold_in_logits`, zeros otherwise. With it, `logits[pos] - logits[neg] >= 0` exactly when
        `sigmoid(calibrated[pos] - calibrated[neg]) >= t`.
        """
        offset = [0.0] * self.num_labels
        if self.threshold_in_logits:
            threshold = self.decision_threshold
            offset[positive_label_id(self.label2id)] = math.log((1.0 - threshold) / threshold)
        return offset


__all__ = [
    "CLIP_AGGREGATIONS",
    "LOSSES",
    "POSITIVE_LABEL",
    "POSITIVE_REDUCTIONS",
    "RESIZE_MODES",
    "TWO_VIEW_ROLES",
    "UsvclConfig",
    "positive_label_id",
]
