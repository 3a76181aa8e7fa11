"""Keep lesion frames only, as the paper's pipeline does before pretraining: the lesion segmenter scores every
decoded frame (batched, with a progress bar) and frames below the lesion threshold are dropped.

Used by `python -m training.prepare_data videos --lesion-model PATH [--lesion-threshold T]`, which writes the
per-clip counts to `lesion_frames.json` beside the store and the totals to `summary.json`.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from usvcl_hf.runtime.lesion import DEFAULT_LESION_BATCH_SIZE, frame_lesion_probabilities, load_lesion_model

CHUNK_FRAMES = 512  # frames decoded from the store's PNG bytes at a time (bounded memory on long clip sets)


def lesion_probabilities(images: list[dict[str, Any]], model: Any, processor: Any, batch_size: int) -> np.ndarray:
    """`(n,)` lesion probability of each stored frame (`{"bytes": png}` rows), chunk by chunk."""
    probabilities = [np.zeros(0)]
    with tqdm(total=len(images), desc="lesion filter", unit="frame") as bar:
        for start in range(0, len(images), CHUNK_FRAMES):
            chunk = images[start : start + CHUNK_FRAMES]
            frames = [np.asarray(Image.open(io.BytesIO(image["bytes"]))) for image in chunk]
            probabilities.append(frame_lesion_probabilities(model, processor, frames, batch_size, bar.update))
    return np.concatenate(probabilities)


def filter_lesion_frames(columns: dict[str, list], model_path: str, threshold: float | None = None,
                         batch_size: int = DEFAULT_LESION_BATCH_SIZE) -> tuple[dict[str, list], dict[str, Any]]:
    """Columns of a video store keeping the frames whose lesion probability reaches `threshold` (default: the
    model's `lesion_threshold`), and a report: the threshold, totals and kept / dropped frames per clip."""
    model, processor = load_lesion_model(model_path)
    cut = float(model.config.lesion_threshold if threshold is None else threshold)
    if not 0.0 <= cut <= 1.0:
        raise ValueError(f"--lesion-threshold must be in [0, 1], got {cut}.")
    keep = lesion_probabilities(columns["image"], model, processor, batch_size) >= cut
    kept = Counter(video for video, flag in zip(columns["video_id"], keep, strict=True) if flag)
    total = Counter(columns["video_id"])
    clips = {video: {"kept": kept[video], "dropped": total[video] - kept[video]} for video in sorted(total)}
    report = {"lesion_model": str(model_path), "lesion_threshold": cut, "frames_kept": int(keep.sum()),
              "frames_dropped": int((~keep).sum()), "clips": clips}
    filtered = {name: [value for value, flag in zip(values, keep, strict=True) if flag]
                for name, values in columns.items()}
    return filtered, report


__all__ = ["filter_lesion_frames", "lesion_probabilities"]
