"""Grad-CAM saliency for usvcl classifiers, aligned with the original frame.

`gradcam_heatmap` runs `pytorch_grad_cam.GradCAM` on the backbone's last stage (`model.usvcl.last_stage()`) and
maps the square heatmap back through the image processor's letterbox (`resize_mode="pad"`) or centre crop
(`"crop"`), so heatmap pixel (y, x) belongs to frame pixel (y, x). `overlay_heatmap` blends it over the frame.
Both are plain functions so that a saliency-versus-lesion-mask study can reuse them.

Grad-CAM hooks the model's target layer while it runs: do not run other forward passes on the same model object
from other threads at the same time (the demo serialises requests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
from matplotlib import colormaps
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..image_processing_usvcl import UINT8_MAX, square_to_frame, to_grey_float
from .input_checks import CHECKED_SIZES

DEFAULT_ALPHA = 0.4
COLORMAP = "jet"


class _LogitsOnly(nn.Module):
    """Wraps a usvcl classifier so that `forward(pixel_values)` returns the logits tensor Grad-CAM expects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(B, C, S, S)` -> logits `(B, num_labels)`."""
        return self.model(pixel_values=pixel_values).logits


def resolve_target_class(model: Any, target_class: int | str | None, logits: torch.Tensor | None = None) -> int:
    """Class index from an index, a label name, or None (= the class with the highest logit)."""
    if target_class is None:
        if logits is None:
            raise ValueError("The predicted class needs the logits.")
        return int(logits.argmax(dim=-1)[0])
    if isinstance(target_class, str):
        label2id = {str(name): int(index) for name, index in model.config.label2id.items()}
        if target_class not in label2id:
            raise ValueError(f"Unknown class {target_class!r}; the model knows {sorted(label2id)}.")
        return label2id[target_class]
    if not 0 <= int(target_class) < model.config.num_labels:
        raise ValueError(f"Class index {target_class} is outside 0..{model.config.num_labels - 1}.")
    return int(target_class)


def gradcam_heatmap(model: Any, processor: Any, frame: Any, target_class: int | str | None = "malignant") -> np.ndarray:
    """Grad-CAM heatmap `(H, W)` in [0, 1] of `frame` (any image `processor` accepts) for `target_class`.

    `target_class`: class index, label name (default "malignant"), or None for the predicted class. The map is
    computed on `model.usvcl.last_stage()` and aligned with the frame's own pixels. Parameters are frozen while it
    runs (gradients flow to the input only), then restored.
    """
    height, width = to_grey_float(frame).shape
    parameter = next(model.parameters())
    pixel_values = processor(frame, return_tensors="pt", **CHECKED_SIZES)["pixel_values"]  # (1, C, S, S)
    pixel_values = pixel_values.to(parameter.device, parameter.dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    try:
        for p in trainable:
            p.requires_grad_(False)  # only activation gradients are needed
        wrapper = _LogitsOnly(model).eval()
        with torch.inference_mode(False), torch.enable_grad():
            pixel_values = pixel_values.clone().requires_grad_(True)
            if target_class is None:
                with torch.no_grad():
                    index = resolve_target_class(model, None, wrapper(pixel_values))
            else:
                index = resolve_target_class(model, target_class)
            with GradCAM(model=wrapper, target_layers=[model.usvcl.last_stage()]) as cam:
                square = cam(input_tensor=pixel_values, targets=[ClassifierOutputTarget(index)])[0]  # (S, S)
    finally:
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)
    heatmap = np.clip(square_to_frame(np.nan_to_num(square), height, width, processor.resize_mode), 0.0, None)
    peak = float(heatmap.max())
    return (heatmap / peak if peak > 0 else heatmap).astype(np.float32)


def overlay_heatmap(frame: Any, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blend a `(h, w)` heatmap in [0, 1] (jet colours) over `frame` -> `(H, W, 3)` uint8 RGB.

    The frame is shown in grey; a heatmap of another size is resized to the frame first.
    """
    grey = to_grey_float(frame)  # (H, W) in [0, 1]
    height, width = grey.shape
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != grey.shape:
        heat = np.asarray(PIL.Image.fromarray(heat, mode="F").resize((width, height), PIL.Image.BILINEAR))
    colours = colormaps[COLORMAP](np.clip(heat, 0.0, 1.0))[..., :3]  # (H, W, 3) in [0, 1]
    blended = (1.0 - alpha) * grey[..., None] + alpha * colours  # (H, W, 3)
    return np.clip(np.rint(blended * UINT8_MAX), 0, UINT8_MAX).astype(np.uint8)


__all__ = ["gradcam_heatmap", "overlay_heatmap", "resolve_target_class", "square_to_frame"]
