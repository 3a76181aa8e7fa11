"""Two views as a transformers pipeline: an image classified whole and on its lesion crop, with the lesion gate,
by the same rules as `predict_clip` and the demo with the bundled lesion segmenter and lesion-crop classifier.

    from transformers import pipeline
    classify = pipeline(model="models/usvcl-lite0-busbra", trust_remote_code=True)  # task "usvcl-two-views"
    classify("breast.png")
    # {"label": "malignant", "probabilities": {"benign": 0.31, "malignant": 0.69}, "threshold": 0.52,
    #  "lesion_probability": 0.99, "lesion_box": (x0, y0, x1, y1), "view_probabilities": {...}}

The whole-image classifier is the pipeline's model; the lesion segmenter and the lesion-crop classifier are named
by its `config.two_view_models` (Hub ids) or given as `lesion_model=` / `crop_model=` (a folder or a Hub id). A Hub
id whose repository name is a folder inside or beside the classifier's own folder is loaded from there, so the
bundled `models/` and site-calibrated folders (`training.calibrate_site`) work offline. For each image (`(H, W)` grey):
1. the segmenter gives P(lesion) and the lesion mask at the image's size; below `config.lesion_threshold` the answer
   is `"no lesion"`, without class probabilities;
2. the crop is the mask's box grown by the crop classifier's `lesion_crop_margin` (`lesion_crop.crop_to_box`);
3. P(malignant) is the mean of the whole image's and the crop's calibrated probabilities, and the label is
   malignant when it reaches the mean of the two classifiers' decision thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    Pipeline,
)

from .configuration_lesion import NO_LESION_LABEL
from .configuration_usvcl import positive_label_id
from .image_processing_usvcl import CHECKED_SIZES, to_grey_uint8
from .lesion_crop import CROP_VIEW, WHOLE_VIEW, crop_to_box, mask_box, two_view_threshold

TASK = "usvcl-two-views"
IMPLEMENTATION = {"impl": "pipeline_usvcl.UsvclTwoViewPipeline", "pt": ["AutoModelForImageClassification"],
                  "type": "image"}  # config.custom_pipelines[TASK] of a classifier that answers with two views


def companion_location(name: str | Path, model: Any) -> str:
    """Where to load a companion model from: the folder of that name inside the classifier's own folder (a
    site-calibrated folder carries its companions there), else `name` when it is a folder, else the folder beside
    the classifier's own that bears its repository name, else `name` itself (a Hub id)."""
    own = Path(str(model.name_or_path))
    inside = own / Path(str(name)).name
    if own.is_dir() and inside.is_dir():
        return str(inside)
    if Path(name).is_dir():
        return str(name)
    sibling = own.parent / Path(str(name)).name
    return str(sibling) if sibling.is_dir() else str(name)


def named_companions(model: Any) -> dict[str, str]:
    """The companions the classifier's own config names (`two_view_models`), by role, each where
    `companion_location` finds it: inside the classifier's folder (a site-calibrated folder carries its companions
    there), beside it, or its Hub id. Empty when the config names none (the model answers with one view)."""
    named = getattr(model.config, "two_view_models", None) or {}
    return {role: companion_location(hub_id, model) for role, hub_id in named.items()}


# role -> (Auto class, the config field that role needs, what a model without it is)
COMPANIONS = {
    "lesion_model": (AutoModelForSemanticSegmentation, "lesion_threshold", "not a lesion segmenter"),
    "crop_model": (AutoModelForImageClassification, "lesion_crop_margin",
                   "a classifier of whole images (no `lesion_crop_margin`), not of lesion crops"),
}


def load_companion(name: str | Path | None, role: str, model: Any) -> tuple[Any, Any]:
    """(model in eval mode, image processor) of the companion `role` ("lesion_model" or "crop_model").
    Raises `ValueError` when none is named or the one named is not of its kind."""
    name = name or (model.config.two_view_models or {}).get(role)
    if not name:
        raise ValueError(f"No {role}: pass {role}= to the pipeline or set config.two_view_models['{role}'].")
    location = companion_location(name, model)
    auto_class, needed, otherwise = COMPANIONS[role]
    config = AutoConfig.from_pretrained(location, trust_remote_code=True)
    if getattr(config, needed, None) is None:
        raise ValueError(f"{role} {name} is a {config.model_type!r} model, {otherwise}.")
    companion = auto_class.from_pretrained(location, trust_remote_code=True).to(model.device).eval()
    return companion, AutoImageProcessor.from_pretrained(location, trust_remote_code=True)


def grey_image(image: Any) -> np.ndarray:
    """A path, PIL image or array as `(H, W)` uint8 grey."""
    if isinstance(image, (str, Path)):
        with PIL.Image.open(image) as opened:
            opened.load()
            return to_grey_uint8(opened)
    return to_grey_uint8(image)


def malignancy(model: Any, pixel_values: torch.Tensor) -> float:
    """Calibrated P(malignant) of one image `(1, C, S, S)`."""
    output = model(pixel_values=pixel_values.to(model.device, model.dtype))
    logits = output.calibrated_logits  # (1, 2)
    return float(torch.softmax(logits.float(), dim=-1)[0, positive_label_id(model.config.label2id)])


class UsvclTwoViewPipeline(Pipeline):
    """Whole image + lesion crop, gated by the lesion segmenter (see the module docstring)."""

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, lesion_model: str | Path | None = None, crop_model: str | Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lesion_model, self.lesion_processor = load_companion(lesion_model, "lesion_model", self.model)
        self.crop_model, self.crop_processor = load_companion(crop_model, "crop_model", self.model)

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:
            raise ValueError(f"{TASK} takes no call options, got {sorted(kwargs)}.")
        return {}, {}, {}

    def preprocess(self, image: Any) -> dict[str, Any]:
        grey = grey_image(image)  # (H, W)
        return {"grey": grey, "whole": self.image_processor(grey, return_tensors="pt")["pixel_values"],
                "lesion": self.lesion_processor(grey, return_tensors="pt")["pixel_values"]}

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        grey = inputs["grey"]
        lesion = self.lesion_model(pixel_values=inputs["lesion"].to(self.device))
        mask = self.lesion_processor.post_process_semantic_segmentation(
            lesion, target_sizes=[grey.shape], threshold=self.lesion_model.config.mask_threshold)[0]  # (H, W)
        box = mask_box(mask.cpu().numpy().astype(bool))
        crop = crop_to_box(grey, box, self.crop_model.config.lesion_crop_margin)  # (h, w)
        crop_pixels = self.crop_processor(crop, return_tensors="pt", **CHECKED_SIZES)["pixel_values"]
        return {"lesion_probability": float(lesion.lesion_probability[0]), "lesion_box": box,
                "views": {WHOLE_VIEW: malignancy(self.model, inputs["whole"]),
                          CROP_VIEW: malignancy(self.crop_model, crop_pixels)}}

    def postprocess(self, outputs: dict[str, Any]) -> dict[str, Any]:
        threshold = two_view_threshold(self.model, self.crop_model)
        result = {"threshold": threshold, "lesion_probability": outputs["lesion_probability"],
                  "lesion_box": outputs["lesion_box"], "view_probabilities": outputs["views"]}
        if outputs["lesion_probability"] < self.lesion_model.config.lesion_threshold:
            return {"label": NO_LESION_LABEL, "probabilities": {}, **result}
        positive = positive_label_id(self.model.config.label2id)
        labels = [self.model.config.id2label[index] for index in (1 - positive, positive)]  # (negative, positive)
        probability = sum(outputs["views"].values()) / 2
        return {"label": labels[probability >= threshold],
                "probabilities": {labels[0]: 1 - probability, labels[1]: probability}, **result}


__all__ = ["IMPLEMENTATION", "TASK", "UsvclTwoViewPipeline", "named_companions"]
