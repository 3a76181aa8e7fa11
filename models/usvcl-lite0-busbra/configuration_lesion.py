"""Configuration of the usvcl lesion segmenter: a timm `features_only` encoder and a light U-Net-style decoder."""

from __future__ import annotations

import timm
from transformers import PretrainedConfig

# A config is a leaf: it imports nothing of this package, so the lesion folder ships without the classifier's files.
RESIZE_MODES = ("pad", "crop")  # the image processor's (image_processing_usvcl.RESIZE_MODES, equal by a test)
PRESENCE_SCORES = ("max_pixel", "head")
LESION_ID2LABEL = {0: "background", 1: "lesion"}
NO_LESION_LABEL = "no lesion"  # the answer for an image (clip) in which no frame reaches `lesion_threshold`
LESION_AUTO_MAP = {
    "AutoConfig": "configuration_lesion.LesionConfig",
    "AutoModel": "modeling_lesion.LesionSegmentationModel",
    "AutoModelForSemanticSegmentation": "modeling_lesion.LesionSegmentationModel",
    "AutoImageProcessor": "image_processing_usvcl.UsvclImageProcessor",
}


def _require(condition: bool, message: str) -> None:
    """Raise a `ValueError` with `message` unless `condition` holds."""
    if not condition:
        raise ValueError(message)


def _require_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a `ValueError` naming the allowed values unless `value` is one of them."""
    _require(value in allowed, f"`{name}` must be one of {list(allowed)}, got {value!r}.")


class LesionConfig(PretrainedConfig):
    r"""
    Configuration for [`LesionSegmentationModel`]: where is the lesion in a breast ultrasound frame, and is there one?

    Args:
        backbone (`str`, defaults to `"tf_efficientnet_lite0"`): timm architecture built with `features_only=True`
            (never downloads: ImageNet weights are loaded by the training script, not by the config).
        in_chans (`int`, defaults to 1): input channels (ultrasound is greyscale).
        image_size (`int`, defaults to 224): side of the square input the image processor produces.
        resize_mode (`str`, defaults to `"pad"`): `"pad"` (letterbox) or `"crop"`, as the image processor.
        decoder_channels (`list[int]`, defaults to `[96, 48, 24, 16]`): output width of each decoder block, deepest
            first; block `i` fuses the upsampled features with encoder stage `n - 2 - i` (a U-Net skip), so at most
            `n - 1` blocks for an encoder of `n` stages.
        presence_score (`str`, defaults to `"max_pixel"`): what `lesion_probability` is: `"max_pixel"` =
            `max_xy sigmoid(mask logit)` over the image, `"head"` = `sigmoid` of a linear presence head on the
            globally pooled deepest features.
        mask_threshold (`float`, defaults to 0.5): pixel probability at and above which a pixel is lesion.
        lesion_threshold (`float`, defaults to 0.5): `lesion_probability` at and above which a frame shows a lesion
            (chosen on inner validation by the training script, never on a test fold).
        dice_weight (`float`, defaults to 1.0), bce_weight (`float`, defaults to 1.0), presence_weight (`float`,
            defaults to 0.2): weights of the soft Dice, pixel BCE and presence BCE terms of the training loss.
    """

    model_type = "usvcl_lesion"

    backbone: str = "tf_efficientnet_lite0"
    in_chans: int = 1
    image_size: int = 224
    resize_mode: str = "pad"
    decoder_channels: list[int] | None = None
    presence_score: str = "max_pixel"
    mask_threshold: float = 0.5
    lesion_threshold: float = 0.5
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    presence_weight: float = 0.2
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        """Default labels background/lesion and decoder widths, then check every field."""
        if self.id2label is None and kwargs.get("num_labels") in (None, len(LESION_ID2LABEL)):
            self.id2label = dict(LESION_ID2LABEL)
            self.label2id = {name: index for index, name in LESION_ID2LABEL.items()}
        if self.decoder_channels is None:
            self.decoder_channels = [96, 48, 24, 16]
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(LESION_AUTO_MAP)
        self.validate_lesion()

    def validate_lesion(self) -> None:
        """Check every field; raise a `ValueError` that says what is allowed."""
        _require(
            timm.is_model(self.backbone),
            f"`backbone` must be a timm architecture name (e.g. 'tf_efficientnet_lite0', 'resnet18'), "
            f"got {self.backbone!r}.",
        )
        _require_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        _require_choice("presence_score", self.presence_score, PRESENCE_SCORES)
        _require(self.in_chans in (1, 3), f"`in_chans` must be 1 (greyscale) or 3, got {self.in_chans}.")
        _require(self.image_size >= 32, f"`image_size` must be at least 32 pixels, got {self.image_size}.")
        _require(
            len(self.decoder_channels) >= 1 and all(int(width) >= 1 for width in self.decoder_channels),
            f"`decoder_channels` must be a non-empty list of positive widths, got {self.decoder_channels}.",
        )
        for name in ("mask_threshold", "lesion_threshold"):
            _require(0.0 <= getattr(self, name) <= 1.0, f"`{name}` must be in [0, 1], got {getattr(self, name)}.")
        for name in ("dice_weight", "bce_weight", "presence_weight"):
            _require(getattr(self, name) >= 0.0, f"`{name}` must be >= 0, got {getattr(self, name)}.")
        _require(self.num_labels == 2, f"`num_labels` must be 2 (background, lesion), got {self.num_labels}.")


__all__ = ["LESION_ID2LABEL", "NO_LESION_LABEL", "PRESENCE_SCORES", "LesionConfig"]
