"""The label-free pretraining monitor: same-clip retrieval, alignment / uniformity, held-out patients."""

from __future__ import annotations

import itertools

import datasets
import numpy as np
import pytest

from training import synthetic
from training.pretrain.monitor import alignment_uniformity, clip_retrieval, split_holdout_patients


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_retrieval_is_perfect_for_separated_clips_and_chance_for_collapse() -> None:
    clips = np.repeat(np.array(["a", "b", "c"]), 4)
    centres = np.eye(3)[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]]
    noise = np.random.default_rng(0).normal(scale=0.01, size=centres.shape)
    assert clip_retrieval(centres + noise, clips) == {"clip_map": 1.0, "clip_recall_at_1": 1.0}
    collapsed = clip_retrieval(np.ones((12, 3)), clips)  # every frame ties: ranking by position only
    assert 0.0 < collapsed["clip_map"] < 1.0


def test_average_precision_against_a_loop_reference() -> None:
    rng = np.random.default_rng(1)
    embeddings, clips = rng.normal(size=(9, 4)), np.array(list("aabbbcccd"))
    unit = _unit(embeddings)
    precisions = []
    for query in range(len(clips)):
        others = [j for j in range(len(clips)) if j != query]
        ranked = sorted(others, key=lambda j: -float(unit[query] @ unit[j]))
        relevant = [clips[j] == clips[query] for j in ranked]
        if any(relevant):
            hits = np.cumsum(relevant)
            precisions.append(np.mean([hits[r] / (r + 1) for r in range(len(ranked)) if relevant[r]]))
    assert clip_retrieval(embeddings, clips)["clip_map"] == pytest.approx(np.mean(precisions))


def test_alignment_and_uniformity_against_a_loop_reference() -> None:
    rng = np.random.default_rng(2)
    embeddings, clips = rng.normal(size=(7, 5)), np.array(list("aaabbcc"))
    unit = _unit(embeddings)
    pairs = list(itertools.combinations(range(7), 2))
    same = [float(np.sum((unit[i] - unit[j]) ** 2)) for i, j in pairs if clips[i] == clips[j]]
    uniform = np.log(np.mean([np.exp(-2 * np.sum((unit[i] - unit[j]) ** 2)) for i, j in pairs]))
    result = alignment_uniformity(embeddings, clips)
    assert result["alignment"] == pytest.approx(np.mean(same))
    assert result["uniformity"] == pytest.approx(uniform)


def test_held_out_patients_leave_training_whole_and_seeded() -> None:
    stores = [synthetic.make_frame_store({f"p{i}": 2 for i in range(4)}, frames_per_video=2),
              synthetic.make_frame_store({f"p{i}": 1 for i in range(3)}, frames_per_video=2)]
    train, held_out = split_holdout_patients(stores, 2, seed=0)
    again = split_holdout_patients(stores, 2, seed=0)[1]
    kept = {(n, p) for n, store in enumerate(train) for p in store["patient_id"]}
    out = {(n, p) for n, store in enumerate(held_out) for p in store["patient_id"]}
    assert len(out) == 2 and not kept & out  # whole patients, never on both sides
    assert sum(map(len, train)) + sum(map(len, held_out)) == sum(map(len, stores))
    assert [store["video_id"] for store in again] == [store["video_id"] for store in held_out]
    assert split_holdout_patients(stores, 0, seed=0) == (stores, [])
    with pytest.raises(ValueError, match="no training patient"):
        split_holdout_patients([datasets.Dataset.from_dict({"patient_id": ["x"]})], 1, seed=0)
