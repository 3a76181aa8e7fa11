"""The demo's words and tables for one `ClipPrediction`: the summary, the per-frame table, user-facing errors.

Pure formatting (pandas, no Gradio), so `app.py` only builds the page; the positive class is named by
`configuration_usvcl.POSITIVE_LABEL`, the class the decision threshold is about.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from usvcl_hf.configuration_usvcl import POSITIVE_LABEL
from usvcl_hf.lesion_crop import two_view_threshold
from usvcl_hf.runtime.clip_prediction import DEFAULT_MAX_FRAMES, ClipPrediction
from usvcl_hf.runtime.lesion import NO_LESION_LABEL
from usvcl_hf.runtime.video import ClipReadError

PROBABILITY_COLUMN = f"P({POSITIVE_LABEL})"
TIME_COLUMN = "time (s)"
FRAME_COLUMN = "frame"
LESION_COLUMN = "P(lesion)"
CURVE_COLUMN = "curve"  # with a lesion model the plot is long: one row per frame and curve
VALUE_COLUMN = "probability"
RESULTS_FILE = "results.json"  # written beside an exported model's weights (training.export)
INITIALISATIONS = {  # results.json's "init" -> words
    "imagenet": "ImageNet weights",
    "random": "random weights",
    "pretrained": "contrastive pretraining on ultrasound clips",
}


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
    max_frames: int = DEFAULT_MAX_FRAMES, calibration: str = "",
) -> str:
    """Short Markdown summary of what was analysed and how. `model_name`: every model that contributed, as
    `models_line` writes them; `calibration`: their calibration, as `calibration_line` writes it."""
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
            f"- models: {model_name}",
            *([f"- calibration: {calibration}"] if calibration else []),
            f"- time: {total_s:.2f} s (decoding + inference {prediction.elapsed_s:.2f} s, Grad-CAM included in total)",
            f"- queue wait: {waited_s:.2f} s",
            "",
            "_Not a diagnosis. Your upload is deleted within a minute; upload again to re-run with other settings._",
        ]
    )


def decision_numbers(probability: float, threshold: float) -> tuple[str, str]:
    """P and the threshold as text, with enough decimals (3 to 6) that the comparison reads as it is decided."""
    for digits in range(3, 7):
        shown_p, shown_t = round(probability, digits), round(threshold, digits)
        if (shown_p >= shown_t) == (probability >= threshold):
            break
    return f"{probability:.{digits}f}", f"{threshold:.{digits}f}"


def decision_statement(prediction: ClipPrediction) -> str:
    """The decision with the numbers that make it, as one statement: "malignant: P(malignant) 0.331 >= threshold
    0.305" (or "benign: ... < ..."); "no lesion: ..." when no frame reaches the lesion threshold."""
    if prediction.label == NO_LESION_LABEL:
        return f"{NO_LESION_LABEL}: no frame reaches P(lesion) {prediction.lesion_threshold:.2f}"
    probability, threshold = decision_numbers(prediction.malignancy, prediction.threshold)
    sign = ">=" if prediction.malignancy >= prediction.threshold else "<"
    return f"{prediction.label}: P({POSITIVE_LABEL}) {probability} {sign} threshold {threshold}"


def answer_line(prediction: ClipPrediction) -> str:
    """The first line of the summary: the decision statement, or that no frame shows a lesion."""
    if prediction.label == NO_LESION_LABEL:
        return (f"**{NO_LESION_LABEL}** — no frame reaches the lesion threshold {prediction.lesion_threshold:.2f}; "
                "no benign/malignant answer is given")
    label, numbers = decision_statement(prediction).split(": ", 1)
    return f"**{label}**: {numbers} (calibrated P({POSITIVE_LABEL}) of the clip against the decision threshold)"


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


def recorded_results(model: Any) -> dict:
    """The model's results.json (written beside its weights by export), or {} when it has none."""
    try:
        return json.loads((Path(str(getattr(model, "name_or_path", ""))) / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def initialisation(model: Any) -> str:
    """How the model's weights started before training, as its results.json records it."""
    init = recorded_results(model).get("init")
    return f"initialised from {INITIALISATIONS.get(init, init)}" if init else "initialisation not recorded"


def calibration_kind(config: Any) -> str:
    """What turns the classifier's scores into probabilities: a temperature, a temperature and a bias, or nothing."""
    temperature = float(getattr(config, "calibration_temperature", 1.0))
    bias = float(getattr(config, "calibration_bias", 0.0))
    if bias:
        return "temperature and bias"
    return "temperature" if temperature != 1.0 else "none (raw scores)"


def calibration_source(config: Any) -> str:
    """Where the calibration was fitted: "site calibration: N benign / M malignant images, DATE" when the config has
    a `site_calibration`, else the training site's."""
    site = getattr(config, "site_calibration", None)
    if site:
        return f"site calibration: {site['benign']} benign / {site['malignant']} malignant images, {site['date']}"
    return "training site's calibration"


def calibration_line(classifier: Any, lesion: Any = None) -> str:
    """The calibration of each classifier that contributes to the answer, for the summary (`lesion`: see
    `models_markdown`)."""
    crop_model = getattr(lesion, "crop_model", None)
    parts = [(classifier, "whole image")] + ([(crop_model, "lesion crop")] if crop_model is not None else [])
    return "; ".join(f"{view}: {calibration_kind(model.config)}, {calibration_source(model.config)}"
                     for model, view in parts)


def models_line(classifier_name: str, lesion: Any = None) -> str:
    """Every model that contributes to the answer, by role (`lesion`: see `models_markdown`)."""
    lesion_name, crop_name = getattr(lesion, "name", None), getattr(lesion, "crop_name", None)
    names = [f"whole image `{classifier_name}`"]
    names.append(f"lesion `{lesion_name}`" if lesion_name else "no lesion model")
    if crop_name:
        names.append(f"lesion crop `{crop_name}`")
    return ", ".join(names)


def classifier_description(model: Any, name: str, view: str) -> str:
    """One line on a classifier: backbone, input, initialisation, calibration, threshold."""
    config = model.config
    return (f"- **{view}**: `{name}`: `{config.backbone}` CNN on {config.image_size} px grey images, "
            f"{initialisation(model)}; calibration: {calibration_kind(config)}, {calibration_source(config)}; "
            f"decision threshold {float(config.decision_threshold):.3f}")


def lesion_description(model: Any, name: str) -> str:
    """One line on the lesion segmenter: backbone, input, initialisation, what it decides."""
    config = model.config
    return (f"- **lesion step**: `{name}`: `{config.backbone}` segmenter on {config.image_size} px, "
            f"{initialisation(model)}; frames with P(lesion) ≥ {float(config.lesion_threshold):.2f} count, and "
            f"a clip without one is answered \"{NO_LESION_LABEL}\"")


def models_markdown(classifier: Any, classifier_name: str, lesion: Any = None) -> str:
    """How the page's answer is made, from the loaded models' configs and results.json (never fixed prose).

    `lesion`: the demo's lesion step (`model`, `name`, and `crop_model`, `crop_name` for two views), or None.
    """
    lesion_model, lesion_name = getattr(lesion, "model", None), getattr(lesion, "name", None)
    crop_model, crop_name = getattr(lesion, "crop_model", None), getattr(lesion, "crop_name", None)
    two_views = crop_model is not None
    threshold = two_view_threshold(classifier, crop_model) if two_views else float(classifier.config.decision_threshold)
    views = ("two views: the mean of the whole-image and the lesion-crop classifiers' calibrated "
             f"P({POSITIVE_LABEL})" if two_views else f"one view: the whole-image classifier's calibrated "
             f"P({POSITIVE_LABEL})")
    steps = "Each kept frame with a lesion" if lesion_model is not None else "Every kept frame (no lesion step)"
    lines = [f"{steps} is classified benign/malignant by {views}; the frame probabilities are combined into one clip "
             f"probability (`{classifier.config.clip_aggregation}` by default), and the answer is {POSITIVE_LABEL} "
             f"when it reaches the decision threshold {threshold:.3f}.", "",
             f"Models: {models_line(classifier_name, lesion)}.", ""]
    if lesion_model is not None:
        lines.append(lesion_description(lesion_model, lesion_name or "lesion model"))
    lines.append(classifier_description(classifier, classifier_name, "whole image"))
    if two_views:
        lines.append(classifier_description(crop_model, crop_name or "lesion-crop model", "lesion crop"))
    return "\n".join(lines)


__all__ = [
    "CURVE_COLUMN",
    "PROBABILITY_COLUMN",
    "TIME_COLUMN",
    "VALUE_COLUMN",
    "calibration_line",
    "decision_statement",
    "describe_error",
    "frame_table",
    "models_line",
    "models_markdown",
    "summary_markdown",
]
