"""usvcl Gradio demo: benign/malignant breast-tumour classification of an ultrasound clip or still images.

Run:
    python app.py [--model DIR_OR_HUB_ID] [--lesion-model DIR_OR_HUB_ID | none] [--port 7860] [--host 127.0.0.1]
                  [--share]

Environment (for Hugging Face Spaces and containers; command-line options win):
    USVCL_MODEL          model folder or Hub id (default models/usvcl-densenet121-busbra)
    USVCL_LESION_MODEL   lesion segmenter folder or Hub id (default models/usvcl-lesion-busbra when present; none)
    GRADIO_SERVER_NAME   host to bind
    GRADIO_SERVER_PORT   port

This file only builds the page: decoding, inference, aggregation and Grad-CAM live in `usvcl_hf`.
A research tool, not a medical device; its output is not a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from usvcl_hf.clip_prediction import DEFAULT_FRAME_STRIDE, ClipPrediction, load_model, predict_clip
from usvcl_hf.configuration_usvcl import CLIP_AGGREGATIONS
from usvcl_hf.lesion import NO_LESION_LABEL, draw_outline, lesion_masks, load_lesion_model
from usvcl_hf.saliency import gradcam_heatmap, overlay_heatmap
from usvcl_hf.video import ClipReadError

LOGGER = logging.getLogger("usvcl.app")
DEFAULT_MODEL = "models/usvcl-densenet121-busbra"
DEFAULT_LESION_MODEL = "models/usvcl-lesion-busbra"  # used when present; `--lesion-model none` turns it off
NO_MODEL = "none"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
CONCURRENCY_LIMIT = 1  # inference is CPU/GPU bound and Grad-CAM hooks the shared model: one request at a time
MAX_QUEUE_SIZE = 32
MAX_FILE_SIZE = "200mb"
MAX_FRAMES = 300  # analysed frames per request (after the stride)
MAX_SECONDS = 120.0  # clip length
MAX_PIXELS = 4096 * 4096  # frame resolution
MAX_FRAME_STRIDE = 30
DELETE_CACHE = (300, 600)  # every 5 min, delete what this app wrote to Gradio's cache more than 10 min ago
SALIENCY_CLASS = "malignant"
FILE_TYPES = [".mp4", ".avi", ".mov", ".webm", ".mkv", ".dcm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"]
PROBABILITY_COLUMN = "P(malignant)"
TIME_COLUMN = "time (s)"
FRAME_COLUMN = "frame"
LESION_COLUMN = "P(lesion)"
CURVE_COLUMN = "curve"  # with a lesion model the plot is long: one row per frame and curve
VALUE_COLUMN = "probability"

NOTICE = (
    "⚠️ **Research tool, not a medical device.** The output is not a diagnosis and must not be used for clinical "
    "decisions. Do not upload images that identify a person. Uploads are deleted after each analysis."
)
EXPLANATION = (
    "Upload a breast ultrasound **clip** (mp4, avi, mov, webm, mkv, DICOM cine) or one or more **still images** "
    "(png, jpg, bmp, tif, DICOM). Every kept frame is classified benign/malignant by a CNN pretrained with "
    "contrastive learning on ultrasound clips (reproduction of arXiv 2408.10600); the frame probabilities are "
    "combined into one clip-level prediction. Probabilities are calibrated by temperature scaling."
)
LIMITS = (
    f"Limits: files up to {MAX_FILE_SIZE.upper()}, clips up to {MAX_SECONDS:g} s and {MAX_FRAMES} analysed frames, "
    f"frames up to {MAX_PIXELS // 1_000_000} megapixels."
)


def describe_error(error: Exception) -> str:
    """A user-facing message for a failed analysis, naming the file (not the server's folders) and the reason."""
    if isinstance(error, ClipReadError):
        name = Path(error.path).name
        reason = error.reason.replace(error.path, name).replace(str(Path(error.path).parent) + os.sep, "")
        return f"Cannot analyse {name}: {reason}."
    return f"Cannot analyse the upload: {error}"


@dataclass
class LesionModel:
    """A loaded lesion segmenter for the demo: frames without a lesion are left out, clips without one say so."""

    model: Any
    processor: Any
    name: str


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


def summary_markdown(prediction: ClipPrediction, model_name: str, total_s: float) -> str:
    """Short Markdown summary of what was analysed and how."""
    crop = "yes" if prediction.crop else "no"
    if prediction.crop and prediction.crop_box is not None:
        top, left, bottom, right = prediction.crop_box
        crop += f" (rows {top}–{bottom}, columns {left}–{right})"
    fps = f"{prediction.fps:.1f} fps" if math.isfinite(prediction.fps) else "stills"
    return "\n".join(
        [
            answer_line(prediction),
            "",
            f"- frames used: {prediction.num_frames} ({fps}, stride {prediction.frame_stride})",
            *lesion_lines(prediction),
            f"- crop to imaging region: {crop}",
            f"- aggregation: `{prediction.aggregation}`",
            f"- most suspicious: {frame_caption(prediction)}; Grad-CAM for class `{SALIENCY_CLASS}`",
            f"- model: `{model_name}`",
            f"- time: {total_s:.2f} s (decoding + inference {prediction.elapsed_s:.2f} s, Grad-CAM included in total)",
            "",
            "_Not a diagnosis. Your upload has been deleted; upload again to re-run with other settings._",
        ]
    )


def answer_line(prediction: ClipPrediction) -> str:
    """The first line of the summary: the answer, or that no frame shows a lesion."""
    if prediction.label == NO_LESION_LABEL:
        return (f"**{NO_LESION_LABEL}** — no frame reaches the lesion threshold {prediction.lesion_threshold:.2f}; "
                "no benign/malignant answer is given")
    return (f"**{prediction.label}** — calibrated P(malignant) = {prediction.malignancy:.3f} "
            f"(decision threshold {prediction.threshold:.2f})")


def lesion_lines(prediction: ClipPrediction) -> list[str]:
    """Summary lines on lesion presence (none without a lesion model)."""
    if prediction.lesion_probabilities is None:
        return ["- lesion model: none (every frame counts)"]
    return [f"- lesion frames: {int(prediction.lesion_frames.sum())} of {prediction.num_frames} (P(lesion) ≥ "
            f"{prediction.lesion_threshold:.2f}); the answer uses these only"]


def upload_paths(files: Any) -> list[str]:
    """Paths of the uploaded files (Gradio gives strings or objects with `.name`)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(item, "name", item)) for item in items]


def is_example_copy(path: Path, examples: list[Path]) -> bool:
    """True when `path` is Gradio's cached copy of one of the example files (same name, same bytes)."""
    return any(path.name == example.name and filecmp.cmp(path, example, shallow=False) for example in examples)


def delete_uploads(paths: list[str], cache_dir: str, examples: list[Path]) -> None:
    """Delete uploads inside Gradio's cache folder (and their per-upload folder when empty); keep example copies."""
    cache = Path(cache_dir).resolve()
    for path in map(Path, paths):
        resolved = path.resolve()
        if cache not in resolved.parents or not resolved.is_file() or is_example_copy(resolved, examples):
            continue
        resolved.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            resolved.parent.rmdir()  # the <sha>/ folder Gradio made for this upload, if now empty


def build_demo(model: Any, processor: Any, model_name: str, lesion: LesionModel | None = None) -> gr.Blocks:
    """The demo page for a loaded model (and optional lesion segmenter); launch with `launch_demo`."""
    default_aggregation = model.config.clip_aggregation

    with gr.Blocks(title="usvcl: breast ultrasound clip classification", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# usvcl — benign or malignant? Breast ultrasound clip classifier")
        gr.Markdown(NOTICE, elem_id="notice")
        lesion_note = f"; lesion model: `{lesion.name}`" if lesion else "; no lesion model (every frame counts)"
        gr.Markdown(f"{EXPLANATION}\n\n{LIMITS}\n\nModel: `{model_name}`{lesion_note}")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(
                    label="Clip or still images (drag and drop)",
                    file_count="multiple",
                    file_types=FILE_TYPES,
                    elem_id="upload",
                )
                with gr.Accordion("Settings", open=False):
                    stride = gr.Slider(
                        1, MAX_FRAME_STRIDE, value=DEFAULT_FRAME_STRIDE, step=1, label="Frame stride",
                        info="analyse every n-th frame of a clip",
                    )
                    aggregation = gr.Dropdown(
                        list(CLIP_AGGREGATIONS), value=default_aggregation, label="Clip aggregation",
                        info="how frame probabilities become one clip probability",
                    )
                    crop = gr.Checkbox(value=True, label="Crop to the imaging region (drop scanner overlays)")
                button = gr.Button("Analyse", variant="primary", elem_id="analyse")
            with gr.Column(scale=1):
                label = gr.Label(label="Clip-level prediction (calibrated probabilities)", elem_id="prediction")
                plot = gr.LinePlot(
                    x=TIME_COLUMN, y=PROBABILITY_COLUMN, y_lim=[0.0, 1.0], title="Malignancy probability per frame",
                    y_title="calibrated P(malignant)", elem_id="timeline",
                )
        with gr.Row():
            frame = gr.Image(label="Most suspicious frame", type="numpy", elem_id="frame")
            cam = gr.Image(label=f"Grad-CAM ({SALIENCY_CLASS})", type="numpy", elem_id="gradcam")
        summary = gr.Markdown(elem_id="summary")
        examples = sorted(EXAMPLES_DIR.glob("clips/*.mp4")) + sorted(EXAMPLES_DIR.glob("images/*.png"))
        if examples:
            gr.Examples(
                examples=[[[str(path)]] for path in examples],
                inputs=[files],
                label="Examples (BUS-BRA, see examples/README.md)",
                example_labels=[path.stem for path in examples],
            )

        def analyse(uploaded: Any, frame_stride: float, method: str, use_crop: bool) -> tuple:
            """Run one request; always delete the uploads (examples excepted)."""
            paths = upload_paths(uploaded)
            try:
                if not paths:
                    raise gr.Error("Upload a clip or one or more images first.", print_exception=False)
                missing = [path for path in paths if not Path(path).is_file()]
                if missing:
                    raise gr.Error(
                        f"Cannot analyse {Path(missing[0]).name}: the upload is no longer on the server "
                        "(uploads are deleted after each analysis); please upload it again.",
                        print_exception=False,
                    )
                return run_analysis(model, processor, model_name, paths, int(frame_stride), method, use_crop, lesion)
            except gr.Error:
                raise
            except (ClipReadError, ValueError) as error:
                message = describe_error(error)
                LOGGER.warning("rejected request: %s", message)
                raise gr.Error(message, print_exception=False) from error
            finally:
                delete_uploads(paths, demo.GRADIO_CACHE, examples)

        button.click(
            analyse,
            inputs=[files, stride, aggregation, crop],
            outputs=[label, plot, frame, cam, summary, files],
            api_name="analyse",
        )
    return demo


def run_analysis(
    model: Any, processor: Any, model_name: str, paths: list[str], frame_stride: int, method: str, crop: bool,
    lesion: LesionModel | None = None,
) -> tuple:
    """Predict, explain the most suspicious frame, and format the outputs of `build_demo`'s event."""
    started = time.perf_counter()
    prediction = predict_clip(
        model, processor, paths, frame_stride=frame_stride, clip_aggregation=method, crop=crop,
        max_frames=MAX_FRAMES, max_seconds=MAX_SECONDS, max_pixels=MAX_PIXELS,
        lesion_model=lesion.model if lesion else None, lesion_processor=lesion.processor if lesion else None,
    )
    suspicious = prediction.frames[prediction.most_suspicious_frame]
    table, x_column = frame_table(prediction)
    caption = frame_caption(prediction)
    if prediction.label == NO_LESION_LABEL:
        shown, overlay = suspicious, None
        frame_label, cam_label = f"No lesion found; most lesion-like: {caption}", "Grad-CAM: not computed (no lesion)"
    else:
        shown = suspicious if lesion is None else draw_outline(
            suspicious, lesion_masks(lesion.model, lesion.processor, [suspicious])[0])
        overlay = overlay_heatmap(suspicious, gradcam_heatmap(model, processor, suspicious, SALIENCY_CLASS))
        outlined = "" if lesion is None else " (lesion outlined)"
        frame_label, cam_label = f"Most suspicious{outlined}: {caption}", f"Grad-CAM ({SALIENCY_CLASS}): {caption}"
    plot_axes = {} if lesion is None else {"y": VALUE_COLUMN, "color": CURVE_COLUMN, "y_title": VALUE_COLUMN}
    total_s = time.perf_counter() - started
    # Property updates (gr.update), not new components: gr.Image(value=...) would encode its image to PNG here,
    # and Gradio encodes the returned value again when it sends the update; the page gets the same update.
    return (
        prediction.probabilities or NO_LESION_LABEL,  # a plain "no lesion", without class probabilities
        gr.update(value=table, x=x_column, x_title=x_column, **plot_axes),
        gr.update(value=shown, label=frame_label),
        gr.update(value=overlay, label=cam_label),
        summary_markdown(prediction, model_name, total_s),
        None,  # clear the upload box: the files were deleted
    )


def launch_demo(demo: gr.Blocks, host: str, port: int, share: bool = False, **kwargs: Any) -> Any:
    """Queue (one request at a time, bounded queue) and launch with the upload-size cap.

    Gradio's own start-up lines are replaced by one that names this app's `--share` option (Gradio's hint says to
    edit `launch()`); pass `quiet=True` to print nothing.
    """
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE_SIZE)
    quiet = kwargs.pop("quiet", False)
    block = not kwargs.pop("prevent_thread_lock", False)
    launched = demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE, quiet=True,
                           prevent_thread_lock=True, **kwargs)
    if not quiet:
        print(startup_message(demo.local_url, demo.share_url), flush=True)
    if block:
        demo.block_thread()
    return launched


def startup_message(local_url: str, share_url: str | None) -> str:
    """Where the demo is served, and how to get a public link (this app's `--share`, not Gradio's `launch()`)."""
    if share_url:
        return f"usvcl demo on {local_url} and on the public link {share_url} (temporary, via gradio.live)"
    return f"usvcl demo on {local_url} (local only; `python app.py --share` also creates a public gradio.live link)"


def missing_model_message(model: str) -> str:
    """How to get a model when the requested one is not there."""
    return (
        f"Model {model!r} was not found.\n"
        f"The default model ({DEFAULT_MODEL}) is produced by the training pipeline: pretrain, fine-tune, then "
        "`python training/export.py` writes it (see README.md).\n"
        "Or pass another one: `python app.py --model DIR_OR_HUB_ID` (or set USVCL_MODEL), e.g. a folder written "
        "by `save_pretrained` with the model and its image processor."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line, with environment-variable defaults for Spaces."""
    parser = argparse.ArgumentParser(description="usvcl breast ultrasound demo (research tool, not a diagnosis).")
    parser.add_argument("--model", default=os.environ.get("USVCL_MODEL", DEFAULT_MODEL),
                        help=f"model folder or Hub id (env USVCL_MODEL; default {DEFAULT_MODEL})")
    parser.add_argument("--lesion-model", default=os.environ.get("USVCL_LESION_MODEL", DEFAULT_LESION_MODEL),
                        help=f"lesion segmenter folder or Hub id, or '{NO_MODEL}' (env USVCL_LESION_MODEL; default "
                             f"{DEFAULT_LESION_MODEL} when that folder exists, else none)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help=f"host to bind (env GRADIO_SERVER_NAME; default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help=f"port (env GRADIO_SERVER_PORT; default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the model once, build the page and serve it."""
    args = parse_args(argv)
    location = str(APP_DIR / DEFAULT_MODEL) if args.model == DEFAULT_MODEL else args.model
    looks_local = location != args.model or args.model.startswith((".", "/", "~"))
    if looks_local and not Path(location).expanduser().is_dir():
        raise SystemExit(missing_model_message(args.model))
    try:
        model, processor = load_model(location)
    except (OSError, ValueError) as error:
        raise SystemExit(f"{missing_model_message(args.model)}\nLoading failed with: {error}") from error
    launch_demo(build_demo(model, processor, args.model, load_demo_lesion_model(args.lesion_model)), args.host,
                args.port, args.share)


def load_demo_lesion_model(name: str) -> LesionModel | None:
    """The lesion segmenter asked for; None for `none` or when the default folder is absent (stated in the log)."""
    if name.lower() == NO_MODEL:
        return None
    location = str(APP_DIR / DEFAULT_LESION_MODEL) if name == DEFAULT_LESION_MODEL else name
    if name == DEFAULT_LESION_MODEL and not Path(location).is_dir():
        LOGGER.warning("no lesion model at %s: every frame counts and 'no lesion' is never answered", location)
        return None
    try:
        model, processor = load_lesion_model(location)
    except (OSError, ValueError) as error:
        raise SystemExit(f"Lesion model {name!r} could not be loaded: {error}\n"
                         f"Pass another with --lesion-model, or --lesion-model {NO_MODEL}.") from error
    return LesionModel(model, processor, name)


if __name__ == "__main__":
    main()
