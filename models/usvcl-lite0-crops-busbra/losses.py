"""Contrastive losses on embeddings: the paper's hard triplet loss and InfoNCE.

Pure functions on tensors. Shapes: `anchor (B, D)`, `positives (B, P, D)`, `negatives (B, N, D)`, an optional
`negative_mask (B, N)` (True = a valid negative for that anchor, used by the shared-negatives mode). Every input is
L2-normalised inside, and the distance is `d(x, y) = 1 - cos(x, y)` in [0, 2].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configuration_usvcl import POSITIVE_REDUCTIONS

NORMALIZE_EPS = 1e-8
MASKED_DISTANCE = 1e4  # larger than any cosine distance (<= 2): never chosen as a hard negative
MASKED_LOGIT = -1e4  # exp() of it is 0 next to any cosine similarity over a temperature


def l2_normalize(embeddings: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension; a zero vector stays zero (finite, no NaN)."""
    return F.normalize(embeddings, p=2.0, dim=-1, eps=NORMALIZE_EPS)


def cosine_distance(anchor: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """`1 - cos(anchor, others)` for `anchor (B, D)` against `others (B, K, D)` -> `(B, K)`; inputs normalised here."""
    anchor, others = l2_normalize(anchor), l2_normalize(others)
    return 1.0 - torch.einsum("bd,bkd->bk", anchor, others)


def _full_mask(negatives: torch.Tensor, negative_mask: torch.Tensor | None) -> torch.Tensor:
    """The given `(B, N)` mask, or all True."""
    if negative_mask is None:
        return torch.ones(negatives.shape[:2], dtype=torch.bool, device=negatives.device)
    return negative_mask.to(device=negatives.device, dtype=torch.bool)


def hard_triplet_loss(
    anchor: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    margin: float = 0.5,
    num_hard_positives: int = 3,
    num_hard_negatives: int = 12,
    positive_reduction: str = "mean_embedding",
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Hard triplet loss of arXiv 2408.10600.

    With `d(x, y) = 1 - cos(x, y)`:

    - hard positives: the `k_p = min(num_hard_positives, P)` positives farthest from the anchor;
    - hard negatives: the `k_n = min(num_hard_negatives, N_valid)` valid negatives closest to the anchor;
    - `"mean_embedding"` (paper text): `p = normalize(mean(hard positives))`, `d_pos = d(a, p)`;
      `"mean_distance"` (authors' code): `d_pos = mean_i d(a, p_i)` over the hard positives;
    - loss `= mean_{b, j} max(0, d_pos(b) - d(a_b, n_{b,j}) + margin)` over the batch and the hard negatives.

    Args:
        anchor: `(B, D)` anchor embeddings.
        positives: `(B, P, D)` embeddings of frames of the anchor's clip.
        negatives: `(B, N, D)` embeddings of frames of other patients' clips.
        margin: triplet margin.
        num_hard_positives: positives averaged (clamped to P).
        num_hard_negatives: negatives used (clamped to N and to the valid ones).
        positive_reduction: `"mean_embedding"` or `"mean_distance"`.
        negative_mask: optional `(B, N)` bool, False for negatives an anchor must not use.

    Returns:
        A scalar tensor, finite for any finite input.
    """
    if positive_reduction not in POSITIVE_REDUCTIONS:
        allowed = list(POSITIVE_REDUCTIONS)
        raise ValueError(f"`positive_reduction` must be one of {allowed}, got {positive_reduction!r}.")
    valid = _full_mask(negatives, negative_mask)  # (B, N)
    positive_distance = cosine_distance(anchor, positives)  # (B, P)
    k_pos = min(num_hard_positives, positives.shape[1])
    hard_pos_index = positive_distance.topk(k_pos, dim=1, largest=True).indices  # (B, k_pos)
    if positive_reduction == "mean_embedding":
        gather_index = hard_pos_index.unsqueeze(-1).expand(-1, -1, positives.shape[-1])  # (B, k_pos, D)
        hard_positives = l2_normalize(positives).gather(1, gather_index)  # (B, k_pos, D)
        prototype = hard_positives.mean(dim=1, keepdim=True)  # (B, 1, D)
        anchor_to_positive = cosine_distance(anchor, prototype).squeeze(1)  # (B,)
    else:
        anchor_to_positive = positive_distance.gather(1, hard_pos_index).mean(dim=1)  # (B,)

    negative_distance = cosine_distance(anchor, negatives).masked_fill(~valid, MASKED_DISTANCE)  # (B, N)
    k_neg = min(num_hard_negatives, negatives.shape[1])
    hard_neg_distance, hard_neg_index = negative_distance.topk(k_neg, dim=1, largest=False)  # (B, k_neg)
    hard_neg_valid = valid.gather(1, hard_neg_index).to(anchor.dtype)  # (B, k_neg)
    violations = F.relu(anchor_to_positive.unsqueeze(1) - hard_neg_distance + margin) * hard_neg_valid
    return violations.sum() / hard_neg_valid.sum().clamp(min=1.0)


def info_nce_loss(
    anchor: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    temperature: float = 0.1,
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE with several positives, each contrasted against all (valid) negatives.

    With `s(x, y) = cos(x, y) / temperature`, for every anchor `a` and positive `p_i`:
    `l_i = -log( exp(s(a, p_i)) / (exp(s(a, p_i)) + sum_j exp(s(a, n_j))) )`, averaged over positives and batch.

    Args:
        anchor: `(B, D)`; positives: `(B, P, D)`; negatives: `(B, N, D)`.
        temperature: softmax temperature (> 0).
        negative_mask: optional `(B, N)` bool, False for negatives an anchor must not use.

    Returns:
        A scalar tensor, finite for any finite input.
    """
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}.")
    valid = _full_mask(negatives, negative_mask)  # (B, N)
    positive_logits = (1.0 - cosine_distance(anchor, positives)) / temperature  # (B, P)
    negative_logits = (1.0 - cosine_distance(anchor, negatives)) / temperature  # (B, N)
    negative_logits = negative_logits.masked_fill(~valid, MASKED_LOGIT)
    negative_logsumexp = torch.logsumexp(negative_logits, dim=1, keepdim=True)  # (B, 1)
    log_denominator = torch.logaddexp(positive_logits, negative_logsumexp)  # (B, P)
    return (log_denominator - positive_logits).mean()


__all__ = ["cosine_distance", "hard_triplet_loss", "info_nce_loss", "l2_normalize"]
