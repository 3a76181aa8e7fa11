"""Pretraining monitors: a LABEL-FREE one that may steer choices, and a labelled probe that is only reported.

- Held-out clips (label-free, `holdout_patients > 0`): whole patients of the frame stores are kept out of training;
  their frames are embedded and scored by how well the encoder tells clips apart, with no label used:
  * same-clip retrieval: every frame queries all other monitor frames ranked by cosine similarity; its average
    precision counts the frames of its own clip as relevant; `clip_map` is the mean over queries that have one,
    `clip_recall_at_1` the share whose nearest neighbour is of the same clip;
  * alignment and uniformity (Wang & Isola, 2020) of the L2-normalised embeddings `e`:
    `alignment = mean_{same clip, i<j} ||e_i - e_j||^2`, `uniformity = log mean_{i<j} exp(-2 ||e_i - e_j||^2)`
    (lower is better for both).
  `selection: monitor` keeps the checkpoint with the highest `clip_map`.
- Labelled probe (report only, `monitor_store`): k-NN AUC on embeddings and logistic-probe AUC on pooled features,
  on a patient-grouped subset of the labelled store's train/val rows, fit on one half and scored on the other.
  It is recorded in `history.json` and never used for a choice (its labels are test images of other folds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import datasets
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import usvcl_hf
from training import evaluation

MONITOR_BATCH_SIZE = 64
MONITOR_SPLIT_VALUES = ("train", "val")  # never "test"
MONITOR_HALVES = 2
PROBE_MAX_ITER = 2000
SELECTION_KEY = "clip_map"  # label-free: the only monitor value `selection: monitor` may use
UNIFORMITY_SCALE = 2.0  # t of Wang & Isola's uniformity, log E exp(-t ||x - y||^2)
HOLDOUT_SEED_STREAM = 7  # separates the held-out patient draw from other seeded draws


@dataclasses.dataclass
class ProbeData:
    """A fixed labelled subset for the k-NN / linear-probe report, split in two patient-grouped halves."""

    pixel_values: torch.Tensor  # (n, C, S, S)
    labels: np.ndarray  # (n,)
    half: np.ndarray  # (n,) 0 or 1


@dataclasses.dataclass
class HeldOutClips:
    """Frames of held-out patients' clips for the label-free monitor."""

    pixel_values: torch.Tensor  # (n, C, S, S)
    clip_ids: np.ndarray  # (n,) str, store-qualified video ids


def qualified(store: datasets.Dataset, column: str, store_number: int) -> np.ndarray:
    """`column` values prefixed by the store number, so ids of different stores never collide."""
    return np.char.add(f"{store_number}/", np.asarray(store[column]).astype(str))


def split_holdout_patients(
    stores: Sequence[datasets.Dataset], num_patients: int, seed: int
) -> tuple[list[datasets.Dataset], list[datasets.Dataset]]:
    """(training stores, held-out stores): `num_patients` seeded patients over all stores go to the held-out side."""
    if num_patients <= 0:
        return list(stores), []
    patients = [qualified(store, "patient_id", number) for number, store in enumerate(stores)]
    everyone = np.unique(np.concatenate(patients))
    if num_patients >= len(everyone):
        raise ValueError(f"`holdout_patients` {num_patients} leaves no training patient (the stores hold "
                         f"{len(everyone)}).")
    held_out = set(np.random.default_rng((seed, HOLDOUT_SEED_STREAM)).permutation(everyone)[:num_patients])
    train, holdout = [], []
    for store, store_patients in zip(stores, patients, strict=True):
        is_held_out = np.isin(store_patients, list(held_out))
        train.append(store.select(np.flatnonzero(~is_held_out)))
        holdout.append(store.select(np.flatnonzero(is_held_out)))
    return train, holdout


def build_held_out_clips(
    stores: Sequence[datasets.Dataset], processor: usvcl_hf.UsvclImageProcessor, max_images: int, seed: int
) -> HeldOutClips | None:
    """At most `max_images` seeded frames of the held-out stores, as processor inputs, with their clip ids."""
    parts = [(number, store) for number, store in enumerate(stores) if len(store)]
    if not parts:
        return None
    clip_ids = np.concatenate([qualified(store, "video_id", number) for number, store in parts])
    rows = np.sort(np.random.default_rng(seed).permutation(len(clip_ids))[:max_images])
    images, offsets = [], np.cumsum([0] + [len(store) for _, store in parts])
    for row in rows:
        part = int(np.searchsorted(offsets, row, side="right")) - 1
        images.append(parts[part][1][int(row - offsets[part])]["image"])
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]  # (n, C, S, S)
    return HeldOutClips(pixel_values=pixel_values, clip_ids=clip_ids[rows])


def build_probe_data(
    store_path: str | None, split_column: str, processor: usvcl_hf.UsvclImageProcessor, max_images: int, seed: int
) -> ProbeData | None:
    """Fixed, seeded, patient-grouped subset of the labelled store's training side, split into two halves."""
    if not store_path:
        return None
    store = datasets.load_from_disk(store_path)
    rows = np.arange(len(store))
    if split_column in store.column_names:
        rows = np.flatnonzero(np.isin(np.asarray(store[split_column]), MONITOR_SPLIT_VALUES))
    patients = np.asarray(store["patient_id"]).astype(str)[rows]
    rng = np.random.default_rng((seed, len(rows)))
    chosen_rows: list[int] = []
    for patient in rng.permutation(np.unique(patients)):
        if len(chosen_rows) >= max_images:
            break
        chosen_rows.extend(rows[patients == patient].tolist())
    subset = store.select(sorted(chosen_rows))
    labels = np.asarray(subset["label"], dtype=int)
    groups = np.asarray(subset["patient_id"]).astype(str)
    splitter = StratifiedGroupKFold(n_splits=MONITOR_HALVES, shuffle=True, random_state=seed)
    _, second_half = next(splitter.split(np.zeros(len(labels)), labels, groups))
    half = np.zeros(len(labels), dtype=int)
    half[second_half] = 1
    pixel_values = processor([row["image"] for row in subset], return_tensors="pt")["pixel_values"]  # (n, C, S, S)
    return ProbeData(pixel_values=pixel_values, labels=labels, half=half)


@torch.no_grad()
def embed(
    encoder: usvcl_hf.UsvclModel, pixel_values: torch.Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings `(n, D)` and pooled features `(n, F)` of `pixel_values (n, C, S, S)` (encoder in eval mode)."""
    was_training = encoder.training
    encoder.eval()
    embeddings, pooled = [], []
    for start in range(0, len(pixel_values), MONITOR_BATCH_SIZE):
        output = encoder(pixel_values[start : start + MONITOR_BATCH_SIZE].to(device), return_dict=True)
        embeddings.append(output.embeddings.float().cpu())
        pooled.append(output.pooler_output.float().cpu())
    encoder.train(was_training)
    return torch.cat(embeddings).numpy(), torch.cat(pooled).numpy()


def probe_report(embeddings: np.ndarray, pooled: np.ndarray, data: ProbeData, k: int) -> dict[str, float]:
    """k-NN (cosine, on embeddings) and logistic-probe (on pooled features) AUC, fit on one half, scored on the
    other, averaged over both directions."""
    knn_aucs, probe_aucs = [], []
    for fit_half in range(MONITOR_HALVES):
        fit, score = data.half == fit_half, data.half != fit_half
        if len(np.unique(data.labels[fit])) < 2 or len(np.unique(data.labels[score])) < 2:
            continue
        knn = KNeighborsClassifier(n_neighbors=min(k, int(fit.sum())), metric="cosine")
        knn.fit(embeddings[fit], data.labels[fit])
        knn_aucs.append(evaluation.auc(data.labels[score], knn.predict_proba(embeddings[score])[:, 1]))
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
        probe.fit(pooled[fit], data.labels[fit])
        probe_aucs.append(evaluation.auc(data.labels[score], probe.predict_proba(pooled[score])[:, 1]))
    nan = float("nan")
    return {
        "knn_auc": float(np.mean(knn_aucs)) if knn_aucs else nan,
        "probe_auc": float(np.mean(probe_aucs)) if probe_aucs else nan,
    }


def clip_retrieval(embeddings: np.ndarray, clip_ids: np.ndarray) -> dict[str, float]:
    """Same-clip retrieval mAP and recall@1 of `embeddings (n, D)` (module docstring); nan without a pair."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)  # (n, D)
    similarity = unit @ unit.T  # (n, n)
    np.fill_diagonal(similarity, -np.inf)  # a frame never retrieves itself
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :-1]  # (n, n-1) others, most similar first
    relevant = clip_ids[order] == clip_ids[:, None]  # (n, n-1)
    queries = relevant.any(axis=1)
    if not queries.any():
        return {"clip_map": float("nan"), "clip_recall_at_1": float("nan")}
    hits = np.cumsum(relevant, axis=1)  # (n, n-1) relevant frames among the first r
    precision = hits / np.arange(1, relevant.shape[1] + 1)  # (n, n-1)
    average_precision = (precision * relevant).sum(axis=1)[queries] / relevant.sum(axis=1)[queries]
    return {"clip_map": float(average_precision.mean()), "clip_recall_at_1": float(relevant[queries, 0].mean())}


def alignment_uniformity(embeddings: np.ndarray, clip_ids: np.ndarray) -> dict[str, float]:
    """Wang & Isola's alignment (same-clip pairs) and uniformity (all pairs) of L2-normalised `embeddings (n, D)`."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)  # (n, D)
    squared = np.clip(2.0 - 2.0 * unit @ unit.T, 0.0, None)  # (n, n) ||e_i - e_j||^2 of unit vectors
    upper = np.triu(np.ones_like(squared, dtype=bool), k=1)  # (n, n) pairs i < j
    same_clip = upper & (clip_ids[:, None] == clip_ids[None, :])
    alignment = float(squared[same_clip].mean()) if same_clip.any() else float("nan")
    pair_terms = -UNIFORMITY_SCALE * squared[upper]
    uniformity = float(np.logaddexp.reduce(pair_terms) - np.log(pair_terms.size)) if upper.any() else float("nan")
    return {"alignment": alignment, "uniformity": uniformity}


@dataclasses.dataclass
class Monitor:
    """The monitors of one run (either may be absent); `run` embeds and scores, `selection_score` picks."""

    held_out: HeldOutClips | None
    probe: ProbeData | None
    k: int

    def run(self, encoder: usvcl_hf.UsvclModel, device: torch.device) -> dict[str, float]:
        """Every monitor value of the current encoder."""
        result: dict[str, float] = {}
        if self.held_out is not None:
            embeddings, _ = embed(encoder, self.held_out.pixel_values, device)
            result.update(clip_retrieval(embeddings, self.held_out.clip_ids))
            result.update(alignment_uniformity(embeddings, self.held_out.clip_ids))
        if self.probe is not None:
            embeddings, pooled = embed(encoder, self.probe.pixel_values, device)
            result.update(probe_report(embeddings, pooled, self.probe, self.k))
        return result

    @staticmethod
    def selection_score(result: dict[str, float]) -> float:
        """The label-free value `selection: monitor` maximises (nan when the held-out monitor did not run)."""
        return result.get(SELECTION_KEY, float("nan"))

    @staticmethod
    def describe(result: dict[str, float]) -> str:
        """One log line of the values."""
        return ", ".join(f"{name} {value:.3f}" for name, value in result.items())


__all__ = [
    "HeldOutClips",
    "Monitor",
    "ProbeData",
    "alignment_uniformity",
    "build_held_out_clips",
    "build_probe_data",
    "clip_retrieval",
    "split_holdout_patients",
]
