"""Hard triplet loss and InfoNCE: closed-form cases, a plain-loop reference, hard-sample selection, degenerate input."""

from __future__ import annotations

import math

import pytest
import torch

from usvcl_hf.losses import cosine_distance, hard_triplet_loss, info_nce_loss

REDUCTIONS = ("mean_embedding", "mean_distance")


def _unit(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _closed_form_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a = (1, 0); positives at distances 0, 1, 2; negatives at distances 1, 0, 1, 2."""
    anchor = _unit(1, 0)[None]  # (1, 2)
    positives = torch.stack([_unit(1, 0), _unit(0, 1), _unit(-1, 0)])[None]  # (1, 3, 2)
    negatives = torch.stack([_unit(0, 1), _unit(1, 0), _unit(0, -1), _unit(-1, 0)])[None]  # (1, 4, 2)
    return anchor, positives, negatives


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        # hard positives at distances 2 and 1 -> d_pos = 1.5; hard negatives at distances 0 and 1
        # loss = mean(1.5 - 0 + 0.5, 1.5 - 1 + 0.5) = mean(2.0, 1.0) = 1.5
        ("mean_distance", 1.5),
        # prototype = normalize((-1, 0) + (0, 1)) = (-1, 1)/sqrt(2) -> d_pos = 1 + 1/sqrt(2)
        # loss = mean(d_pos + 0.5, d_pos - 1 + 0.5) = d_pos
        ("mean_embedding", 1 + 1 / math.sqrt(2)),
    ],
)
def test_hard_triplet_closed_form(reduction: str, expected: float) -> None:
    anchor, positives, negatives = _closed_form_batch()
    loss = hard_triplet_loss(
        anchor, positives, negatives, margin=0.5, num_hard_positives=2, num_hard_negatives=2,
        positive_reduction=reduction,
    )
    assert loss.item() == pytest.approx(expected)


def test_info_nce_closed_form() -> None:
    # s(a, p) = 1/T, s(a, n) = 0 and -1/T with T = 0.5 -> -log(e^2 / (e^2 + e^0 + e^-2))
    anchor = _unit(1, 0)[None]
    positives = _unit(1, 0)[None, None]
    negatives = torch.stack([_unit(0, 1), _unit(-1, 0)])[None]
    loss = info_nce_loss(anchor, positives, negatives, temperature=0.5)
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert loss.item() == pytest.approx(expected)


def _loop_hard_triplet(anchor, positives, negatives, margin, k_pos, k_neg, reduction) -> float:
    """Plain-Python reference, one anchor at a time."""
    terms = []
    for a, pos, neg in zip(anchor, positives, negatives):
        a = a / a.norm()
        pos = [p / p.norm() for p in pos]
        neg = [n / n.norm() for n in neg]
        pos_sorted = sorted(pos, key=lambda p: -(1 - float(a @ p)))[: min(k_pos, len(pos))]
        if reduction == "mean_embedding":
            proto = sum(pos_sorted) / len(pos_sorted)
            d_pos = 1 - float(a @ (proto / proto.norm()))
        else:
            d_pos = sum(1 - float(a @ p) for p in pos_sorted) / len(pos_sorted)
        neg_d = sorted(1 - float(a @ n) for n in neg)[: min(k_neg, len(neg))]
        terms += [max(0.0, d_pos - d + margin) for d in neg_d]
    return sum(terms) / len(terms)


def _loop_info_nce(anchor, positives, negatives, temperature) -> float:
    """Plain-Python reference of multi-positive InfoNCE."""
    losses = []
    for a, pos, neg in zip(anchor, positives, negatives):
        a = a / a.norm()
        neg_exp = sum(math.exp(float(a @ (n / n.norm())) / temperature) for n in neg)
        for p in pos:
            s = float(a @ (p / p.norm())) / temperature
            losses.append(-math.log(math.exp(s) / (math.exp(s) + neg_exp)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("num_pos", "num_neg", "k_pos", "k_neg"), [(5, 9, 3, 4), (2, 3, 3, 12), (1, 1, 3, 12)])
def test_hard_triplet_matches_loop(reduction: str, num_pos: int, num_neg: int, k_pos: int, k_neg: int) -> None:
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    positives = torch.randn(4, num_pos, 8, generator=generator, dtype=torch.float64)
    negatives = torch.randn(4, num_neg, 8, generator=generator, dtype=torch.float64)
    loss = hard_triplet_loss(
        anchor,
        positives,
        negatives,
        margin=0.3,
        num_hard_positives=k_pos,
        num_hard_negatives=k_neg,
        positive_reduction=reduction,
    )
    expected = _loop_hard_triplet(anchor, positives, negatives, 0.3, k_pos, k_neg, reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_info_nce_matches_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    anchor = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    positives = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    negatives = torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    loss = info_nce_loss(anchor, positives, negatives, temperature=0.2)
    assert loss.item() == pytest.approx(_loop_info_nce(anchor, positives, negatives, 0.2), rel=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_only_hard_negatives_matter(reduction: str) -> None:
    anchor, positives, negatives = _closed_form_batch()
    kwargs = dict(margin=0.5, num_hard_positives=2, num_hard_negatives=2, positive_reduction=reduction)
    base = hard_triplet_loss(anchor, positives, negatives, **kwargs)
    easy_moved = negatives.clone()
    easy_moved[0, 3] = _unit(-1, 0.1)  # the farthest (easy) negative moves, still the farthest
    assert hard_triplet_loss(anchor, positives, easy_moved, **kwargs).item() == pytest.approx(base.item())
    hard_moved = negatives.clone()
    hard_moved[0, 0] = _unit(1, 0.2)  # a negative at distance 1 comes close to the anchor
    assert hard_triplet_loss(anchor, positives, hard_moved, **kwargs).item() > base.item() + 1e-3


def test_negative_mask_excludes_negatives() -> None:
    generator = torch.Generator().manual_seed(2)
    anchor, positives = torch.randn(2, 5, generator=generator), torch.randn(2, 3, 5, generator=generator)
    negatives = torch.randn(2, 6, 5, generator=generator)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, :2] = False
    for loss_fn in (hard_triplet_loss, info_nce_loss):
        masked = loss_fn(anchor, positives, negatives, negative_mask=mask)
        dropped = loss_fn(anchor, positives, negatives[:, 2:])
        assert masked.item() == pytest.approx(dropped.item(), rel=1e-5)


@pytest.mark.parametrize("loss_fn", [hard_triplet_loss, info_nce_loss])
def test_gradient_reaches_anchor(loss_fn) -> None:
    generator = torch.Generator().manual_seed(3)
    anchor = torch.randn(2, 4, generator=generator, requires_grad=True)
    loss = loss_fn(anchor, torch.randn(2, 3, 4, generator=generator), torch.randn(2, 5, 4, generator=generator))
    loss.backward()
    assert anchor.grad is not None and anchor.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", [hard_triplet_loss, info_nce_loss])
def test_finite_on_degenerate_input(loss_fn) -> None:
    anchor = torch.zeros(2, 4, requires_grad=True)
    positives, negatives = torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)
    loss = loss_fn(anchor, positives, negatives)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(anchor.grad).all()
    all_masked = torch.zeros(2, 1, dtype=torch.bool)
    assert torch.isfinite(
        loss_fn(torch.randn(2, 4), torch.randn(2, 1, 4), torch.randn(2, 1, 4), negative_mask=all_masked)
    )


def test_cosine_distance_range() -> None:
    anchor = _unit(1, 0)[None]
    others = torch.stack([_unit(1, 0), _unit(-3, 0), _unit(0, 2)])[None]
    assert cosine_distance(anchor, others)[0].tolist() == pytest.approx([0.0, 2.0, 1.0])


def test_unknown_reduction_is_rejected() -> None:
    anchor, positives, negatives = _closed_form_batch()
    with pytest.raises(ValueError, match="mean_embedding"):
        hard_triplet_loss(anchor, positives, negatives, positive_reduction="max")
