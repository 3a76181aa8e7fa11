"""The demo's words and tables for one `ClipPrediction`: the summary, the per-frame table, user-facing errors.

Pure formatting (pandas, no Gradio), so `app.py` only builds the page; the positive class is named by
`configuration_usvcl.POSITIVE_LABEL`, the class the decision threshold is about.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from usvcl_hf.configuration_usvcl import POSITIVE_LABEL
from usvcl_hf.runtime.clip_prediction import DEFAULT_MAX_FRAMES, ClipPrediction
from usvcl_hf.runtime.lesion import NO_LESION_LABEL
from usvcl_hf.runtime.video import ClipReadError

PROBABILITY_COLUMN = f"P({POSITIVE_LABEL})"
TIME_COLUMN = "time (s)"
FRAME_COLUMN = "frame"
LESION_COLUMN = "P(lesion)"
CURVE_COLUMN = "curve"  # with a lesion model the plot is long: one row per frame and curve
VALUE_COLUMN = "probability"


def describe_error(error: Exception) -> str:
    """A user-facing message for a failed analysis, naming the file (not the server's folders) and the reason."""
    if isinstance(error, ClipReadError):
        name = Path(error.path).name
        reason = error.reason.replace(error.path, name).replace(str(Path(error.path).parent) + os.sep, "")
        return f"Cannot analyse {name}: {reason}."
    return f"Cannot analyse the upload: {error}"


def frame_table(prediction: ClipPrediction) -> tuple[pd.DataFrame, str]:
    """Per-frame malignancy as a DataFrame (one row per kept frame) and the name of its x column; with lesion
    probabilities, long format: one row per frame and curve (`CURVE_COLUMN` is P(malignant) or P(lesion))."""
    times_known = math.isfinite(prediction.fps)
    x_column = TIME_COLUMN if times_known else FRAME_COLUMN
    x_values = prediction.times_s if times_known else prediction.frame_indices
    if prediction.lesion_probabilities is None:
        return pd.DataFrame({x_column: x_values, PROBABILITY_COLUMN: prediction.frame_probabilities}), x_column
    curves = [(PROBABILITY_COLUMN, prediction.frame_probabilities), (LESION_COLUMN, prediction.lesion_probabilities)]
    table = pd.concat([pd.DataFrame({x_column: x_values, VALUE_COLUMN: values, CURVE_COLUMN: name})
                       for name, values in curves], ignore_index=True)
    return table, x_column


def frame_caption(prediction: ClipPrediction) -> str:
    """Where the most suspicious frame is: time and frame index for a clip, file name for stills."""
    position = prediction.most_suspicious_frame
    index = int(prediction.frame_indices[position])
    if math.isfinite(prediction.fps):
        return f"frame {index} at {prediction.times_s[position]:.2f} s"
    return f"image {Path(prediction.sources[position]).name}"


def frames_line(prediction: ClipPrediction, requested_stride: int, max_frames: int) -> str:
    """What was sampled: frame count, rate, stride (and why it was raised), and any reduction while decoding."""
    fps = f"{prediction.fps:.1f} fps" if math.isfinite(prediction.fps) else "stills"
    line = f"- frames used: {prediction.num_frames} ({fps}, stride {prediction.frame_stride}"
    if prediction.frame_stride > requested_stride > 0 and math.isfinite(prediction.fps):
        line += f": raised from {requested_stride} to spread at most {max_frames} frames over the whole clip"
    line += ")"
    if prediction.downscale > 1 and prediction.source_size is not None:
        height, width = prediction.source_size
        line += (f"; frames reduced 1/{prediction.downscale} while decoding ({width}x{height} -> "
                 f"{width // prediction.downscale}x{height // prediction.downscale})")
    return line


def summary_markdown(
    prediction: ClipPrediction, model_name: str, total_s: float, requested_stride: int = 0, waited_s: float = 0.0,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> str:
    """Short Markdown summary of what was analysed and how."""
    crop = "yes" if prediction.crop else "no"
    if prediction.crop and prediction.crop_box is not None:
        top, left, bottom, right = prediction.crop_box
        crop += f" (rows {top}–{bottom}, columns {left}–{right} of the decoded frame)"
    warning = [f"⚠️ **{prediction.ood_warning}**", ""] if prediction.ood_warning else []  # usvcl_hf.runtime.ood
    return "\n".join(
        [
            *warning,
            answer_line(prediction),
            "",
            frames_line(prediction, requested_stride, max_frames),
            *lesion_lines(prediction),
            f"- crop to imaging region: {crop}",
            f"- aggregation: `{prediction.aggregation}`",
            suspicious_line(prediction),
            f"- model: `{model_name}`",
            f"- time: {total_s:.2f} s (decoding + inference {prediction.elapsed_s:.2f} s, Grad-CAM included in total)",
            f"- queue wait: {waited_s:.2f} s",
            "",
            "_Not a diagnosis. Your upload is deleted within a minute; upload again to re-run with other settings._",
        ]
    )


def answer_line(prediction: ClipPrediction) -> str:
    """The first line of the summary: the answer, or that no frame shows a lesion."""
    if prediction.label == NO_LESION_LABEL:
        return (f"**{NO_LESION_LABEL}** — no frame reaches the lesion threshold {prediction.lesion_threshold:.2f}; "
                "no benign/malignant answer is given")
    return (f"**{prediction.label}** — calibrated P({POSITIVE_LABEL}) = {prediction.malignancy:.3f} "
            f"(decision threshold {prediction.threshold:.2f})")


def suspicious_line(prediction: ClipPrediction) -> str:
    """Which frame is shown, whether its lesion is outlined, and whether Grad-CAM was computed."""
    if prediction.label == NO_LESION_LABEL:
        return f"- no lesion found; most lesion-like: {frame_caption(prediction)}; Grad-CAM not computed (no lesion)"
    outlined = "" if prediction.lesion_probabilities is None else " (lesion outlined)"
    return f"- most suspicious{outlined}: {frame_caption(prediction)}; Grad-CAM for class `{POSITIVE_LABEL}`"


def lesion_lines(prediction: ClipPrediction) -> list[str]:
    """Summary lines on lesion presence (none without a lesion model)."""
    if prediction.lesion_probabilities is None:
        return ["- lesion model: none (every frame counts)"]
    lines = [f"- lesion frames: {int(prediction.lesion_frames.sum())} of {prediction.num_frames} (P(lesion) ≥ "
             f"{prediction.lesion_threshold:.2f}); the answer uses these only"]
    return lines + view_lines(prediction)


def view_lines(prediction: ClipPrediction) -> list[str]:
    """With two views, what each said about the most suspicious frame (none for one view)."""
    if not prediction.view_probabilities:
        return []
    position = prediction.most_suspicious_frame
    said = ", ".join(f"{name} {values[position]:.3f}" for name, values in prediction.view_probabilities.items())
    return [f"- views: each frame's P({POSITIVE_LABEL}) is the mean of {' and '.join(prediction.view_probabilities)}"
            f" (most suspicious frame: {said})"]


__all__ = [
    "CURVE_COLUMN",
    "PROBABILITY_COLUMN",
    "TIME_COLUMN",
    "VALUE_COLUMN",
    "describe_error",
    "frame_table",
    "summary_markdown",
]
