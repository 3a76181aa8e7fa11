"""Clip-level benign/malignant prediction: decode a clip (or stills), classify every kept frame, aggregate.

`predict_clip` is what the demo (`app.py`), scripts and notebooks call, so they all give the same answer:

    from usvcl_hf.runtime.clip_prediction import load_model, predict_clip
    model, processor = load_model("models/usvcl-lite0-busbra")
    result = predict_clip(model, processor, "sweep.mp4")
    result.label, result.probabilities, result.frame_probabilities

With a lesion segmenter (`usvcl_hf.runtime.lesion.load_lesion_model`) passed as `lesion_model`/`lesion_processor`, every
frame also gets a lesion probability, the clip's answer aggregates over lesion frames only, and a clip in which no
frame shows a lesion is answered `label == "no lesion"` with no benign/malignant probabilities.

With a lesion-crop classifier (`config.lesion_crop_margin` set) passed as `crop_model`/`crop_processor` as well
(two views), each frame's malignancy is the mean of the whole frame's and its lesion crop's calibrated probability
(the crop: the segmenter's mask box plus the margin, `usvcl_hf.lesion_crop`), and the decision threshold the mean of
the two models' thresholds (`two_view_threshold`).

Frame probabilities are softmax outputs of the model's calibrated logits (divided by
`config.calibration_temperature`, shifted by `config.calibration_bias`), so they (and the clip probabilities) are
calibrated. Decoding goes through
`usvcl_hf.runtime.video` (PyAV, pydicom, Pillow); this module is not a Hub file.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..configuration_usvcl import CLIP_AGGREGATIONS, POSITIVE_LABEL, positive_label_id
from ..image_processing_usvcl import to_grey_uint8
from ..lesion_crop import CROP_VIEW, WHOLE_VIEW, lesion_crops, two_view_threshold
from .aggregation import aggregate_probabilities
from .inference_prep import prepare_for_inference
from .input_checks import CHECKED_SIZES, check_frame_sizes
from .lesion import NO_LESION_LABEL, check_model_location, frame_lesions
from .ood import clip_ood_score, ood_warning
from .video import (
    VIDEO_SUFFIXES,
    ClipReadError,
    ClipTooLongError,
    DecodeBudget,
    detect_imaging_region,
    read_clip,
    shrink,
)

DEFAULT_FRAME_STRIDE = 5
DEFAULT_MAX_FRAMES = 600
DEFAULT_BATCH_SIZE = 16
# Frames are shrunk as they are decoded towards this many times the model's input side (DecodeBudget.working_side):
# the longer side of a kept frame stays below 2 x 2 x image_size, enough for the imaging-region crop and the resize.
WORKING_SIDE_FACTOR = 2
UNLIMITED = sys.maxsize

Box = tuple[int, int, int, int]
ImageLike = str | Path | np.ndarray | PIL.Image.Image


@dataclass
class ClipPrediction:
    """Result of `predict_clip`. Arrays are indexed by kept frame (T frames)."""

    label: str  # clip-level decision by `decision_threshold`, or NO_LESION_LABEL when no frame shows a lesion
    probabilities: dict[str, float]  # calibrated clip probabilities per label, summing to 1 (empty: no lesion)
    frame_probabilities: np.ndarray  # (T,) calibrated malignancy probability of each kept frame
    frame_indices: np.ndarray  # (T,) source frame index (position in the list for stills)
    times_s: np.ndarray  # (T,) frame time in seconds; nan when the source has no frame rate
    fps: float  # source frame rate; nan for stills and DICOM without timing
    most_suspicious_frame: int  # position (0..T-1) of the lesion frame with the highest malignancy probability
    frames: list[np.ndarray]  # T frames as (H, W) uint8 greyscale, after cropping (what the model saw)
    sources: list[str]  # (T,) file (or "<image k>") each frame came from
    frame_stride: int  # stride used (1 for stills)
    crop: bool  # whether the imaging-region crop was applied
    crop_boxes: list[Box | None]  # (T,) (top, left, bottom, right) cut from each frame, None without crop
    aggregation: str  # name from CLIP_AGGREGATIONS
    threshold: float  # decision threshold on the clip malignancy probability
    elapsed_s: float  # wall time of decoding + inference
    downscale: int = 1  # frames were shrunk by this whole factor while decoding (1: native size)
    source_size: tuple[int, int] | None = None  # (H, W) of the source frames before shrinking (first source)
    lesion_probabilities: np.ndarray | None = None  # (T,) lesion presence per frame; None without a lesion model
    lesion_threshold: float = math.nan  # lesion probability at and above which a frame counts as a lesion frame
    ood_score: float = math.nan  # out-of-distribution score of the clip (median over frames); nan without statistics
    ood_warning: str | None = None  # set when `ood_score` is above `config.ood_threshold` (usvcl_hf.runtime.ood)
    frame_ood_scores: np.ndarray | None = None  # (T,) out-of-distribution score of each kept frame
    view_probabilities: dict[str, np.ndarray] | None = None  # two views: (T,) calibrated malignancy of each view
    lesion_boxes: list[Box | None] | None = None  # two views: (T,) lesion box of each frame (None: none found)
    suspicious_lesion_mask: np.ndarray | None = None  # two views: (H, W) bool lesion mask of the most suspicious frame

    @property
    def lesion_frames(self) -> np.ndarray:
        """`(T,)` bool: the frames the answer aggregates over (all frames without a lesion model)."""
        return lesion_frame_mask(self.lesion_probabilities, self.lesion_threshold, self.num_frames)

    @property
    def num_frames(self) -> int:
        """Number of frames used."""
        return len(self.frames)

    @property
    def malignancy(self) -> float:
        """Calibrated clip probability of the positive (malignant) class."""
        return self.probabilities.get(POSITIVE_LABEL, math.nan)

    @property
    def crop_box(self) -> Box | None:
        """Crop box of the most suspicious frame (the clip's box for a clip)."""
        return self.crop_boxes[self.most_suspicious_frame]


def lesion_frame_mask(lesion_probabilities: np.ndarray | None, threshold: float, count: int) -> np.ndarray:
    """`(T,)` bool: frames whose lesion probability reaches `threshold`; all `count` frames without probabilities."""
    if lesion_probabilities is None:
        return np.ones(count, dtype=bool)
    return np.asarray(lesion_probabilities) >= threshold


@dataclass
class DecodedFrames:
    """Greyscale frames decoded from a source, before inference (`read_source`)."""

    frames: list[np.ndarray]
    frame_indices: np.ndarray
    fps: float
    sources: list[str]
    crop_boxes: list[Box | None]
    frame_stride: int
    downscale: int = 1
    source_size: tuple[int, int] | None = None


def load_model(
    model_id_or_dir: str | Path, device: str | torch.device | None = None, fold_batchnorm: bool = True,
    static_padding: bool = True,
) -> tuple[Any, Any]:
    """Load a usvcl classifier and its image processor (Auto classes, `trust_remote_code=True`), ready for
    inference (`usvcl_hf.runtime.inference_prep.prepare_for_inference`: eval mode, channels_last, with `fold_batchnorm`
    BatchNorms folded into the convolutions, with `static_padding` TensorFlow-"same" stride-2 convolutions padded
    inside the convolution; same outputs; load with `from_pretrained` to train or save).

    Raises `FileNotFoundError` for a local-looking path that does not exist, `OSError` when loading fails.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    name = str(model_id_or_dir)
    check_model_location(name)
    model = AutoModelForImageClassification.from_pretrained(name, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=True)
    if device is not None:
        model = model.to(device)
    return prepare_for_inference(model, fold_batchnorm, static_padding), processor


def positive_class_index(config: Any) -> int:
    """Index of the malignant class (binary models only)."""
    if config.num_labels != 2:
        raise ValueError(f"Clip prediction needs a binary (benign/malignant) model, got {config.num_labels} labels.")
    return positive_label_id(config.label2id)


def _check_image_count(count: int, max_frames: int | None) -> None:
    """Raise `ClipTooLongError` when more than `max_frames` still images are given."""
    if max_frames is not None and count > max_frames:
        raise ClipTooLongError(f"{count} images", f"more than {max_frames} images; give at most {max_frames}")


def working_side(processor: Any) -> int | None:
    """Side frames are shrunk towards while decoding: WORKING_SIDE_FACTOR x the processor's `image_size`."""
    size = getattr(processor, "image_size", None)
    return None if size is None else WORKING_SIDE_FACTOR * int(size)


def _read_one_path(path: Path, frame_stride: int, crop: bool, max_pixels: int | None,
                   budget: DecodeBudget) -> DecodedFrames:
    """Read one clip, DICOM or image file within `budget` (a long clip is sampled evenly, not refused)."""
    clip = read_clip(path, frame_stride=frame_stride, crop=crop, max_pixels=max_pixels, budget=budget)
    count = len(clip.frames)
    return DecodedFrames(
        frames=list(clip.frames),
        frame_indices=np.asarray(clip.frame_indices, dtype=np.int64),
        fps=float(clip.fps),
        sources=[str(path)] * count,
        crop_boxes=[clip.crop_box] * count,
        frame_stride=clip.frame_stride if count > 1 or path.suffix.lower() in VIDEO_SUFFIXES else 1,
        downscale=clip.downscale,
        source_size=clip.source_size,
    )


def _read_still(
    item: ImageLike, position: int, crop: bool, max_pixels: int | None, side: int | None
) -> tuple[np.ndarray, str, Box | None]:
    """One still (path, array or PIL image) -> `(H, W)` uint8 frame (shrunk towards `side`), name and crop box."""
    budget = DecodeBudget(max_frames=2, max_pixels=UNLIMITED, working_side=side)
    if isinstance(item, (str, Path)):
        path = Path(item)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            raise ClipReadError(path, "a video clip cannot be mixed with other files; upload it on its own")
        clip = read_clip(path, frame_stride=1, crop=crop, max_pixels=max_pixels, budget=budget)
        if len(clip.frames) > 1:
            raise ClipReadError(path, "a multi-frame file cannot be mixed with other files; upload it on its own")
        return clip.frames[0], str(path), clip.crop_box
    name = f"<image {position}>"
    frame = to_grey_uint8(item)
    if max_pixels is not None and frame.size > max_pixels:
        raise ClipReadError(name, f"resolution {frame.shape[1]}x{frame.shape[0]} exceeds max_pixels={max_pixels}")
    check_frame_sizes([frame], [name])
    frame = shrink(frame, budget.shrink_factor(*frame.shape))  # (H, W) -> (H // f, W // f)
    box = None
    if crop:
        box = detect_imaging_region(frame)
        top, left, bottom, right = box
        frame = np.ascontiguousarray(frame[top:bottom, left:right])
    return frame, name, box


def _read_stills(items: Sequence[ImageLike], crop: bool, max_pixels: int | None, side: int | None) -> DecodedFrames:
    """Several stills, one frame each (sizes may differ)."""
    frames, sources, boxes = [], [], []
    for position, item in enumerate(items):
        frame, source, box = _read_still(item, position, crop, max_pixels, side)
        frames.append(frame)
        sources.append(source)
        boxes.append(box)
    return DecodedFrames(
        frames=frames,
        frame_indices=np.arange(len(frames), dtype=np.int64),
        fps=math.nan,
        sources=sources,
        crop_boxes=boxes,
        frame_stride=1,
    )


def read_source(
    source: ImageLike | Sequence[ImageLike],
    *,
    frame_stride: int = DEFAULT_FRAME_STRIDE,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    max_seconds: float | None = None,
    crop: bool = True,
    max_pixels: int | None = None,
    side: int | None = None,
    max_decoded_pixels: int | None = None,
) -> DecodedFrames:
    """Decode a clip path, an image path, one image, or a list of stills into greyscale frames within the caps.

    A clip keeps at most `max_frames` frames and `max_decoded_pixels` frames x pixels, evenly spread over it, its
    frames shrunk towards `side` as they are decoded (`usvcl_hf.runtime.video.DecodeBudget`); more than `max_frames`
    stills, or a clip longer than `max_seconds`, raise `ClipTooLongError`.
    """
    if isinstance(source, (list, tuple)) and len(source) == 1:
        source = source[0]
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("No file or image was given.")
        _check_image_count(len(source), max_frames)
        return _read_stills(source, crop, max_pixels, side)
    if not isinstance(source, (str, Path)):
        return _read_stills([source], crop, max_pixels, side)
    budget = DecodeBudget(
        max_frames=max_frames or UNLIMITED, max_pixels=max_decoded_pixels or UNLIMITED, working_side=side,
        max_seconds=max_seconds,
    )
    return _read_one_path(Path(source), frame_stride, crop, max_pixels, budget)


def frame_scores(
    model: Any, processor: Any, frames: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibrated malignancy probability `(T,)` and out-of-distribution score `(T,)` (None when the model has no
    statistics) of each frame: batched forward passes under `inference_mode`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    positive = positive_class_index(model.config)
    parameter = next(model.parameters())
    probabilities, ood_scores = [], []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            chunk = list(frames[start : start + batch_size])
            batch = processor(chunk, return_tensors="pt", **CHECKED_SIZES)["pixel_values"]
            output = model(pixel_values=batch.to(parameter.device, parameter.dtype))
            logits = calibrated_logits(output)  # (b, 2)
            probabilities.append(torch.softmax(logits.float(), dim=-1)[:, positive].cpu())  # (b,)
            if getattr(output, "ood_score", None) is not None:
                ood_scores.append(output.ood_score.float().cpu())  # (b,)
    ood = torch.cat(ood_scores).numpy().astype(np.float64) if ood_scores else None  # (T,)
    return torch.cat(probabilities).numpy().astype(np.float64), ood  # (T,), (T,)


def frame_malignancy(
    model: Any, processor: Any, frames: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Calibrated malignancy probability `(T,)` of each frame (`frame_scores` without the OOD scores)."""
    return frame_scores(model, processor, frames, batch_size)[0]


def calibrated_logits(output: Any) -> torch.Tensor:
    """The calibrated class scores of a model output: `calibrated_logits` (usvcl), else `logits` (any classifier)."""
    calibrated = getattr(output, "calibrated_logits", None)
    return output.logits if calibrated is None else calibrated


def clip_decision(config: Any, malignancy: float, threshold: float | None = None) -> tuple[str, dict[str, float]]:
    """Label by `threshold` (default `config.decision_threshold`) and the two calibrated class probabilities."""
    positive = positive_class_index(config)
    id2label = {int(index): str(name) for index, name in config.id2label.items()}
    positive_name, negative_name = id2label[positive], id2label[1 - positive]
    threshold = config.decision_threshold if threshold is None else threshold
    label = positive_name if malignancy >= threshold else negative_name
    return label, {negative_name: 1.0 - malignancy, positive_name: malignancy}


def decide_over_lesion_frames(
    model: Any, frame_probabilities: np.ndarray, lesion_frames: np.ndarray, aggregation: str,
    lesion_probabilities: np.ndarray | None, threshold: float | None = None,
) -> tuple[str, dict[str, float], int]:
    """Label (by `threshold`, default the model's), clip probabilities and most suspicious frame from the lesion
    frames' malignancy only.

    No lesion frame: `NO_LESION_LABEL`, no probabilities, and the frame most likely to show a lesion."""
    if not lesion_frames.any():
        return NO_LESION_LABEL, {}, int(np.argmax(lesion_probabilities))
    kept = np.flatnonzero(lesion_frames)  # positions of the lesion frames
    malignancy = aggregate_probabilities(frame_probabilities[kept], aggregation, top_k=model.config.clip_top_k)
    label, probabilities = clip_decision(model.config, malignancy, threshold)
    return label, probabilities, int(kept[np.argmax(frame_probabilities[kept])])


def resolve_aggregation(config: Any, clip_aggregation: str | None) -> str:
    """`clip_aggregation`, else the model config's; a `ValueError` unless it is one of `CLIP_AGGREGATIONS`."""
    aggregation = clip_aggregation or config.clip_aggregation
    if aggregation not in CLIP_AGGREGATIONS:
        raise ValueError(f"clip_aggregation must be one of {list(CLIP_AGGREGATIONS)}, got {aggregation!r}.")
    return aggregation


@dataclass
class FrameScores:
    """What the models say about each kept frame (`score_frames`)."""

    malignancy: np.ndarray  # (T,) calibrated malignancy (two views: their mean)
    ood: np.ndarray | None  # (T,) out-of-distribution score of the whole-image model; None without statistics
    threshold: float  # decision threshold on the clip malignancy
    lesion_probabilities: np.ndarray | None = None  # (T,) lesion presence; None without a lesion model
    lesion_threshold: float = math.nan
    views: dict[str, np.ndarray] | None = None  # two views: (T,) calibrated malignancy of each
    lesion_boxes: list[Box | None] | None = None  # two views: (T,) each frame's lesion box
    lesion_masks: list[np.ndarray] | None = None  # two views: T x (H, W) bool lesion mask of each frame


def check_crop_model(crop_model: Any) -> None:
    """Raise `ValueError` unless `crop_model` is a lesion-crop classifier (`config.lesion_crop_margin` set)."""
    if getattr(crop_model.config, "lesion_crop_margin", None) is None:
        raise ValueError("crop_model classifies whole images (its config has no `lesion_crop_margin`); pass a "
                         "classifier trained on lesion crops (training.finetune --lesion-crop).")


def score_frames(
    model: Any, processor: Any, frames: Sequence[np.ndarray], batch_size: int, lesion_model: Any = None,
    lesion_processor: Any = None, crop_model: Any = None, crop_processor: Any = None,
) -> FrameScores:
    """Each frame's calibrated malignancy and OOD score; with a lesion model its lesion probability; with a crop
    model too, the lesion crops' malignancy averaged with the whole frames' (two views)."""
    if crop_model is not None:
        check_crop_model(crop_model)
        if lesion_model is None:
            raise ValueError("crop_model needs a lesion_model: the lesion segmenter finds the crops.")
    malignancy, ood = frame_scores(model, processor, frames, batch_size)
    scores = FrameScores(malignancy, ood, float(model.config.decision_threshold))
    if lesion_model is None:
        return scores
    probabilities, masks = frame_lesions(lesion_model, lesion_processor, frames, batch_size,
                                         with_masks=crop_model is not None)
    scores.lesion_probabilities, scores.lesion_threshold = probabilities, float(lesion_model.config.lesion_threshold)
    if crop_model is not None:
        crops, scores.lesion_boxes = lesion_crops(masks, frames, crop_model.config.lesion_crop_margin)
        scores.lesion_masks = masks
        crop_malignancy = frame_scores(crop_model, crop_processor, crops, batch_size)[0]  # (T,)
        scores.views = {WHOLE_VIEW: malignancy, CROP_VIEW: crop_malignancy}
        scores.malignancy = (malignancy + crop_malignancy) / 2  # (2, T) -> (T,)
        scores.threshold = two_view_threshold(model, crop_model)
    return scores


def frame_times(decoded: DecodedFrames) -> np.ndarray:
    """`(T,)` time in seconds of each kept frame; nan when the source has no frame rate."""
    fps = decoded.fps
    if not math.isfinite(fps) or fps <= 0:
        return np.full(len(decoded.frames), np.nan)
    return np.asarray(decoded.frame_indices / fps, dtype=np.float64)


def predict_clip(
    model: Any, processor: Any, source: ImageLike | Sequence[ImageLike], *, frame_stride: int | None = None,
    clip_aggregation: str | None = None, crop: bool = True, max_frames: int | None = DEFAULT_MAX_FRAMES,
    max_seconds: float | None = None, max_pixels: int | None = None, max_decoded_pixels: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, lesion_model: Any = None, lesion_processor: Any = None,
    crop_model: Any = None, crop_processor: Any = None,
) -> ClipPrediction:
    """Classify a clip (or stills) as benign/malignant (or "no lesion", with a lesion model).

    Args:
        model: a usvcl `UsvclForImageClassification` (any binary classifier with `.config` and `.logits`).
        processor: its image processor.
        source: a clip/DICOM/image path, an image array or PIL image, or a list of stills (one frame each).
        frame_stride: keep every n-th source frame (default `DEFAULT_FRAME_STRIDE`; stills use 1).
        clip_aggregation: one of `CLIP_AGGREGATIONS` (default `model.config.clip_aggregation`).
        crop: cut frames to the imaging region (`usvcl_hf.runtime.video.detect_imaging_region`).
        max_frames: most frames analysed: a clip with more is sampled evenly down to it (the stride is raised),
            more stills raise `ClipTooLongError` (None = no cap).
        max_seconds: longest clip accepted; a longer one raises `ClipTooLongError` (None = no cap).
        max_pixels: largest frame accepted (`ClipReadError` above it).
        max_decoded_pixels: decode budget, kept frames x pixels of a clip (None = no cap); frames are also shrunk
            as they are decoded towards `WORKING_SIDE_FACTOR` x the processor's `image_size`.
        batch_size: frames per forward pass.
        lesion_model, lesion_processor: optional lesion segmenter (`usvcl_hf.runtime.lesion.load_lesion_model`); frames
            whose lesion probability is below `lesion_model.config.lesion_threshold` are left out of the answer.
        crop_model, crop_processor: optional lesion-crop classifier (needs the lesion model): two views, each
            frame's malignancy the mean of its whole-frame and lesion-crop probabilities.

    Raises:
        ClipReadError: unreadable, empty, oversized or too long input (message names the file and the reason).
        ValueError: bad arguments.
    """
    started = time.perf_counter()
    aggregation = resolve_aggregation(model.config, clip_aggregation)
    decoded = read_source(
        source, frame_stride=DEFAULT_FRAME_STRIDE if frame_stride is None else int(frame_stride),
        max_frames=max_frames, max_seconds=max_seconds, crop=crop, max_pixels=max_pixels,
        side=working_side(processor), max_decoded_pixels=max_decoded_pixels,
    )
    scores = score_frames(model, processor, decoded.frames, batch_size, lesion_model, lesion_processor, crop_model,
                          crop_processor)
    lesion_frames = lesion_frame_mask(scores.lesion_probabilities, scores.lesion_threshold, len(decoded.frames))
    label, probabilities, most_suspicious = decide_over_lesion_frames(
        model, scores.malignancy, lesion_frames, aggregation, scores.lesion_probabilities, scores.threshold
    )
    ood_score = clip_ood_score(scores.ood)
    return ClipPrediction(
        label=label, probabilities=probabilities, frame_probabilities=scores.malignancy,
        frame_indices=decoded.frame_indices, times_s=frame_times(decoded), fps=decoded.fps,
        most_suspicious_frame=most_suspicious, frames=decoded.frames, sources=decoded.sources,
        frame_stride=decoded.frame_stride, crop=crop, crop_boxes=decoded.crop_boxes, aggregation=aggregation,
        threshold=scores.threshold, elapsed_s=time.perf_counter() - started,
        downscale=decoded.downscale, source_size=decoded.source_size,
        lesion_probabilities=scores.lesion_probabilities, lesion_threshold=scores.lesion_threshold,
        ood_score=ood_score, ood_warning=ood_warning(model.config, ood_score), frame_ood_scores=scores.ood,
        view_probabilities=scores.views, lesion_boxes=scores.lesion_boxes,
        suspicious_lesion_mask=None if scores.lesion_masks is None else scores.lesion_masks[most_suspicious],
    )


__all__ = [
    "CROP_VIEW",
    "DEFAULT_FRAME_STRIDE",
    "DEFAULT_MAX_FRAMES",
    "NO_LESION_LABEL",
    "WHOLE_VIEW",
    "ClipPrediction",
    "ClipTooLongError",
    "DecodedFrames",
    "FrameScores",
    "check_crop_model",
    "clip_decision",
    "decide_over_lesion_frames",
    "frame_malignancy",
    "frame_scores",
    "load_model",
    "positive_class_index",
    "predict_clip",
    "read_source",
    "score_frames",
    "two_view_threshold",
    "working_side",
]
