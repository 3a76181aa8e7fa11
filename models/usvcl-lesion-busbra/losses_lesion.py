"""Segmentation losses of the lesion model: soft Dice plus binary cross-entropy on pixels and on lesion presence.

Pure functions on tensors. Shapes: `mask_logits (B, 1, H, W)`, `targets (B, 1, H, W)` in {0, 1} (an all-zero target
is a lesion-free image), `presence_logits (B,)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1.0  # keeps the Dice of an empty prediction on an empty target at 1 (loss 0), and gradients finite


def soft_dice_loss(mask_logits: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Mean over images of `1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)` with `p = sigmoid(logits)`.

    On a lesion-free image (`t = 0`) the loss is `sum(p) / (sum(p) + s)`: it pushes every pixel towards 0.
    """
    probabilities = torch.sigmoid(mask_logits).flatten(1)  # (B, 1, H, W) -> (B, H*W)
    flat_targets = targets.flatten(1).to(probabilities.dtype)  # (B, 1, H, W) -> (B, H*W)
    overlap = (probabilities * flat_targets).sum(dim=1)  # (B,)
    total = probabilities.sum(dim=1) + flat_targets.sum(dim=1)  # (B,)
    return (1.0 - (2.0 * overlap + smooth) / (total + smooth)).mean()


def segmentation_loss(
    mask_logits: torch.Tensor,
    presence_logits: torch.Tensor,
    targets: torch.Tensor,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    presence_weight: float = 0.0,
) -> torch.Tensor:
    """`w_dice * Dice + w_bce * BCE(pixels) + w_presence * BCE(presence, any(t))`, a scalar."""
    if targets.shape != mask_logits.shape:
        raise ValueError(f"`labels` must have the mask logits' shape {tuple(mask_logits.shape)}, got "
                         f"{tuple(targets.shape)}.")
    targets = targets.to(mask_logits.dtype)
    loss = dice_weight * soft_dice_loss(mask_logits, targets)
    loss = loss + bce_weight * F.binary_cross_entropy_with_logits(mask_logits, targets)
    if presence_weight > 0:
        present = targets.flatten(1).amax(dim=1)  # (B, 1, H, W) -> (B,): 1 when the image shows a lesion
        loss = loss + presence_weight * F.binary_cross_entropy_with_logits(presence_logits, present)
    return loss


__all__ = ["segmentation_loss", "soft_dice_loss"]
