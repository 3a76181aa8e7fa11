"""usvcl Gradio demo: benign/malignant breast-tumour classification of an ultrasound clip or still images.

Run:
    python app.py [--model DIR_OR_HUB_ID] [--lesion-model DIR_OR_HUB_ID | none] [--crop-model DIR_OR_HUB_ID | none]
                  [--port 7860] [--host 127.0.0.1] [--share]

Environment (for Hugging Face Spaces and containers; command-line options win):
    USVCL_MODEL          model folder or Hub id (default models/usvcl-lite0-busbra)
    USVCL_LESION_MODEL   lesion segmenter folder or Hub id (default models/usvcl-lesion-busbra when present; none)
    USVCL_CROP_MODEL     lesion-crop classifier folder or Hub id, the second view (default
                         models/usvcl-lite0-crops-busbra when present and a lesion model is loaded; none)
    GRADIO_SERVER_NAME   host to bind
    GRADIO_SERVER_PORT   port

This file only builds the page: decoding, inference, aggregation and Grad-CAM live in `usvcl_hf`.
A research tool, not a medical device; its output is not a diagnosis.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import io
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import PIL.Image
from fastapi.middleware import Middleware
from gradio.components.label import LabelConfidence, LabelData
from gradio.data_classes import Base64ImageData
from starlette.formparsers import MultiPartException

from usvcl_hf.clip_prediction import DEFAULT_FRAME_STRIDE, ClipPrediction, check_crop_model, load_model, predict_clip
from usvcl_hf.configuration_usvcl import CLIP_AGGREGATIONS, POSITIVE_LABEL
from usvcl_hf.demo_storage import AnalysisGate, DemoStorage, GateFullError, UploadGoneError, UploadNameGuard
from usvcl_hf.demo_summary import (
    CURVE_COLUMN,
    PROBABILITY_COLUMN,
    TIME_COLUMN,
    VALUE_COLUMN,
    describe_error,
    frame_table,
    summary_markdown,
)
from usvcl_hf.lesion import NO_LESION_LABEL, draw_outline, lesion_masks, load_lesion_model
from usvcl_hf.saliency import gradcam_heatmap, overlay_heatmap
from usvcl_hf.video import DICOM_SUFFIXES, IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, VIDEO_SUFFIXES, ClipReadError

LOGGER = logging.getLogger("usvcl.app")
DEFAULT_MODEL = "models/usvcl-lite0-busbra"
DEFAULT_LESION_MODEL = "models/usvcl-lesion-busbra"  # used when present; `--lesion-model none` turns it off
DEFAULT_CROP_MODEL = "models/usvcl-lite0-crops-busbra"  # the second view, with the lesion model; `none` turns it off
NO_MODEL = "none"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
# Every request starts at once (Gradio concurrency unlimited) so that it copies its uploads before anything can
# delete them; the analyses themselves run one at a time in arrival order (AnalysisGate: inference is CPU/GPU bound
# and Grad-CAM hooks the shared model), at most MAX_QUEUE_SIZE waiting.
MAX_QUEUE_SIZE = 32
MAX_FILE_SIZE = "200mb"
MAX_FRAMES = 300  # analysed frames per request: a longer clip is sampled evenly down to this many
MAX_SECONDS = 120.0  # clip length
MAX_PIXELS = 4096 * 4096  # frame resolution accepted; larger frames are shrunk while decoding (DecodeBudget)
MAX_DECODED_PIXELS = MAX_FRAMES * 1024 * 768  # decode budget: kept frames x pixels of one clip (236 MB of uint8)
MAX_FRAME_STRIDE = 30
UPLOAD_MAX_AGE_S = 45.0  # uploads (analysed or not) older than this are deleted ...
SWEEP_EVERY_S = 10.0  # ... by a sweep this often: gone within a minute
SALIENCY_CLASS = POSITIVE_LABEL  # Grad-CAM explains the class the decision threshold is about
FILE_TYPES = sorted(SUPPORTED_SUFFIXES)  # what usvcl_hf.video reads (plus DICOM without a suffix)

NOTICE = (
    "⚠️ **Research tool, not a medical device.** The output is not a diagnosis and must not be used for clinical "
    "decisions. Do not upload images that identify a person. Uploads are deleted from the server within a minute, "
    "analysed or not (each analysis works on its own copy, deleted when it ends); results are sent back with the "
    "answer and not stored."
)


def suffix_list(suffixes: frozenset[str]) -> str:
    """`{".mp4", ".avi"}` -> "avi, mp4"."""
    return ", ".join(sorted(suffix.lstrip(".") for suffix in suffixes))


EXPLANATION = (
    f"Upload a breast ultrasound **clip** ({suffix_list(VIDEO_SUFFIXES)}, or a DICOM cine loop: "
    f"{suffix_list(DICOM_SUFFIXES)} or no suffix) or one or more **still images** ({suffix_list(IMAGE_SUFFIXES)}, "
    "DICOM). Every kept frame is classified benign/malignant by a CNN pretrained with "
    "contrastive learning on ultrasound clips (reproduction of arXiv 2408.10600); the frame probabilities are "
    "combined into one clip-level prediction. Probabilities are calibrated by temperature scaling."
)
LIMITS = (
    f"Limits: files up to {MAX_FILE_SIZE.upper()}, clips up to {MAX_SECONDS:g} s, frames up to "
    f"{MAX_PIXELS // 1_000_000} megapixels. At most {MAX_FRAMES} frames are analysed: a longer clip is sampled "
    "evenly (the frame stride is raised), and large frames are reduced while they are decoded; the summary says what "
    "was used."
)


def inline_png(value: np.ndarray | PIL.Image.Image | None) -> Base64ImageData | None:
    """`gr.Image` output processing that sends the image inside the response as a PNG data URI (no file on disk)."""
    return None if value is None else Base64ImageData(url=png_data_uri(value))


def png_data_uri(image: np.ndarray | PIL.Image.Image) -> str:
    """An image as a `data:image/png;base64,...` URI."""
    picture = image if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def inline_image(**kwargs: Any) -> gr.Image:
    """A `gr.Image` output whose images travel inside the response (data URIs), never as files on the server.

    (Set on the instance: a subclass of a Gradio component makes Gradio write a `.pyi` stub next to this file.)
    """
    image = gr.Image(**kwargs)
    image.postprocess = inline_png
    return image


def decision_label_component(**kwargs: Any) -> gr.Label:
    """A `gr.Label` that shows `LabelData` as given: the decision, which near the threshold may not be the likelier
    class (plain `gr.Label` always shows the likelier one)."""
    label = gr.Label(**kwargs)
    default = label.postprocess
    label.postprocess = lambda value: value if isinstance(value, LabelData) else default(value)
    return label


def decision_label(prediction: ClipPrediction) -> LabelData:
    """The decision (as in the summary) with both calibrated class probabilities, likelier first."""
    ranked = sorted(prediction.probabilities.items(), key=lambda item: item[1], reverse=True)
    confidences = [LabelConfidence(label=name, confidence=value) for name, value in ranked]
    return LabelData(label=prediction.label, confidences=confidences or None)  # "no lesion": no class probabilities


@dataclass
class LesionModel:
    """A loaded lesion segmenter for the demo: frames without a lesion are left out, clips without one say so; with
    a lesion-crop classifier, each frame is also classified on its lesion crop (two views)."""

    model: Any
    processor: Any
    name: str
    crop_model: Any = None
    crop_processor: Any = None
    crop_name: str | None = None


def upload_paths(files: Any) -> list[str]:
    """Paths of the uploaded files (Gradio gives strings or objects with `.name`)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(item, "name", item)) for item in items]


def example_files() -> dict[str, Path]:
    """The bundled examples by name (read from the repository's examples/ folder, never from a cache)."""
    paths = sorted(EXAMPLES_DIR.glob("clips/*.mp4")) + sorted(EXAMPLES_DIR.glob("images/*.png"))
    return {path.stem: path for path in paths}


def gradio_cannot_store(filename: str) -> bool:
    """True for an upload name Gradio's /upload route refuses only after storing the file (`..`).

    The same steps as `gradio.route_utils.upload_fn`: base name, invalid characters stripped, `safe_join`.
    """
    from gradio.exceptions import InvalidPathError
    from gradio.utils import safe_join
    from gradio_client.utils import strip_invalid_filename_characters

    name = strip_invalid_filename_characters(Path(filename).name) if Path(filename).name else ""
    try:
        safe_join("upload", name or "tmp")
    except InvalidPathError:
        return True
    return False


def default_storage() -> DemoStorage:
    """Gradio's upload folder (GRADIO_TEMP_DIR) and a fresh folder for per-request copies next to it."""
    from gradio.utils import get_upload_folder

    uploads = Path(get_upload_folder())
    uploads.mkdir(parents=True, exist_ok=True)
    requests = Path(tempfile.mkdtemp(prefix="usvcl-requests-", dir=uploads.parent))
    return DemoStorage(uploads=uploads, requests=requests, max_age_s=UPLOAD_MAX_AGE_S, every_s=SWEEP_EVERY_S)


def build_demo(
    model: Any, processor: Any, model_name: str, lesion: LesionModel | None = None, storage: DemoStorage | None = None
) -> gr.Blocks:
    """The demo page for a loaded model (and optional lesion segmenter); serve it with `launch_demo` (which also
    starts `storage`'s sweep).

    `storage` (default: `default_storage()`) holds the uploads and the per-request copies; it is kept as
    `demo.usvcl_storage` for `launch_demo` and `close_demo`.
    """
    storage = storage or default_storage()
    examples = example_files()
    with gr.Blocks(title="usvcl: breast ultrasound clip classification") as demo:
        gr.Markdown("# usvcl — benign or malignant? Breast ultrasound clip classifier")
        gr.Markdown(NOTICE, elem_id="notice")
        lesion_note = f"; lesion model: `{lesion.name}`" if lesion else "; no lesion model (every frame counts)"
        if lesion and lesion.crop_model is not None:
            lesion_note += f"; lesion-crop model: `{lesion.crop_name}` (two views)"
        gr.Markdown(f"{EXPLANATION}\n\n{LIMITS}\n\nModel: `{model_name}`{lesion_note}")
        inputs, outputs, button = page_layout(model.config.clip_aggregation, list(examples))
        analyse = analysis_handler(model, processor, model_name, storage, examples, lesion)
        button.click(analyse, inputs=inputs, outputs=outputs, api_name="analyse", concurrency_limit=None,
                     trigger_mode="once")
        files, example = inputs[0], inputs[1]
        files.upload(lambda: None, outputs=example, queue=False, show_progress="hidden", api_visibility="private")
        example.change(lambda name: None if name else gr.skip(), inputs=example, outputs=files, queue=False,
                       show_progress="hidden", api_visibility="private")
    demo.usvcl_storage = storage
    return demo


def page_layout(default_aggregation: str, example_names: list[str]) -> tuple[list, list, gr.Button]:
    """The page's components: ([files, example, stride, aggregation, crop], [outputs], Analyse button)."""
    with gr.Row():
        with gr.Column(scale=1):
            files = gr.File(label="Clip or still images (drag and drop)", file_count="multiple", elem_id="upload")
            example = gr.Dropdown(example_names, value=None, label="… or an example (BUS-BRA, see examples/README.md)",
                                  elem_id="example")
            with gr.Accordion("Settings", open=False):
                stride = gr.Slider(1, MAX_FRAME_STRIDE, value=DEFAULT_FRAME_STRIDE, step=1, label="Frame stride",
                                   info="analyse every n-th frame of a clip")
                aggregation = gr.Dropdown(list(CLIP_AGGREGATIONS), value=default_aggregation,
                                          label="Clip aggregation",
                                          info="how frame probabilities become one clip probability")
                crop = gr.Checkbox(value=True, label="Crop to the imaging region (drop scanner overlays)")
            button = gr.Button("Analyse", variant="primary", elem_id="analyse")
        with gr.Column(scale=1):
            label = decision_label_component(label="Clip-level decision (calibrated probabilities)",
                                             elem_id="prediction")
            plot = gr.LinePlot(x=TIME_COLUMN, y=PROBABILITY_COLUMN, y_lim=[0.0, 1.0],
                               title="Malignancy probability per frame", y_title=f"calibrated {PROBABILITY_COLUMN}",
                               elem_id="timeline")
    with gr.Row():
        frame = inline_image(label="Most suspicious frame (see the summary)", elem_id="frame")
        cam = inline_image(label=f"Grad-CAM ({SALIENCY_CLASS}) of the most suspicious frame", elem_id="gradcam")
    summary = gr.Markdown(elem_id="summary")
    if example_names:
        gr.Examples(examples=[[name] for name in example_names], inputs=[example], label="Examples")
    return [files, example, stride, aggregation, crop], [label, plot, frame, cam, summary, files], button


def analysis_handler(model: Any, processor: Any, model_name: str, storage: DemoStorage, examples: dict[str, Path],
                     lesion: LesionModel | None = None):
    """The Analyse event: copy the uploads at once, wait for the gate, analyse, always delete the copies."""
    gate = AnalysisGate(MAX_QUEUE_SIZE)

    def analyse(uploaded: Any, example: str | None, frame_stride: float, method: str, use_crop: bool,
                progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 (Gradio's injection idiom)
        paths = upload_paths(uploaded)
        if not paths and example not in examples:
            raise gr.Error("Upload a clip or one or more images, or pick an example, first.", print_exception=False)
        try:
            with storage.request_copies(paths) as copies, gate.turn(lambda ahead: progress(
                    0.0, desc=f"waiting: {ahead} analyses ahead")) as waited_s:
                sources = copies or [str(examples[example])]
                try:
                    return run_analysis(model, processor, model_name, sources, int(frame_stride), method, use_crop,
                                        lesion, waited_s=waited_s)
                finally:
                    return_freed_memory()
        except UploadGoneError as error:
            raise gr.Error(f"Cannot analyse {Path(str(error)).name}: the upload is no longer on the server (uploads "
                           "are deleted within a minute); please upload it again.", print_exception=False) from error
        except GateFullError as error:
            raise gr.Error(f"The server is busy ({error}); please try again in a minute.",
                           print_exception=False) from error
        except (ClipReadError, ValueError) as error:
            message = describe_error(error)
            LOGGER.warning("rejected request: %s", message)
            raise gr.Error(message, print_exception=False) from error

    return analyse


def return_freed_memory() -> None:
    """Hand memory freed by the analysis back to the operating system (glibc's `malloc_trim`; no-op elsewhere).

    Decoded frames and activations are freed after each request, but glibc keeps much of it in its heap for reuse,
    so the server's resident size would stay at its peak (docs/benchmarks.md, "Demo under load").
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def suspicious_lesion_mask(prediction: ClipPrediction, lesion: LesionModel) -> np.ndarray:
    """`(H, W)` bool lesion mask of the most suspicious frame: the one two views already computed, else the lesion
    model's on that frame."""
    if prediction.suspicious_lesion_mask is not None:
        return prediction.suspicious_lesion_mask
    return lesion_masks(lesion.model, lesion.processor, [prediction.frames[prediction.most_suspicious_frame]])[0]


def run_analysis(
    model: Any, processor: Any, model_name: str, paths: list[str], frame_stride: int, method: str, crop: bool,
    lesion: LesionModel | None = None, *, waited_s: float = 0.0,
) -> tuple:
    """Predict, explain the most suspicious frame, and format the outputs of `build_demo`'s event."""
    started = time.perf_counter()
    prediction = predict_clip(
        model, processor, paths, frame_stride=frame_stride, clip_aggregation=method, crop=crop,
        max_frames=MAX_FRAMES, max_seconds=MAX_SECONDS, max_pixels=MAX_PIXELS, max_decoded_pixels=MAX_DECODED_PIXELS,
        lesion_model=lesion.model if lesion else None, lesion_processor=lesion.processor if lesion else None,
        crop_model=lesion.crop_model if lesion else None, crop_processor=lesion.crop_processor if lesion else None,
    )
    suspicious = prediction.frames[prediction.most_suspicious_frame]
    table, x_column = frame_table(prediction)
    if prediction.label == NO_LESION_LABEL:
        shown, overlay = suspicious, None  # the summary says: no lesion, Grad-CAM not computed
    else:
        shown = suspicious if lesion is None else draw_outline(suspicious, suspicious_lesion_mask(prediction, lesion))
        overlay = overlay_heatmap(suspicious, gradcam_heatmap(model, processor, suspicious, SALIENCY_CLASS))
    plot_axes = {} if lesion is None else {"y": VALUE_COLUMN, "color": CURVE_COLUMN, "y_title": VALUE_COLUMN}
    total_s = time.perf_counter() - started
    # Label and images as plain values, not gr.update(...): an update makes Gradio build a fresh component from its
    # class, without the instance's inline postprocess (`inline_image`, `decision_label_component`).
    return (
        decision_label(prediction),  # a plain "no lesion", without class probabilities, when no frame shows one
        gr.update(value=table, x=x_column, x_title=x_column, **plot_axes),
        shown,
        overlay,
        summary_markdown(prediction, model_name, total_s, frame_stride, waited_s, MAX_FRAMES),
        None,  # clear the upload box: the analysis is done with the files
    )


def launch_demo(demo: gr.Blocks, host: str, port: int, share: bool = False, **kwargs: Any) -> Any:
    """Queue, launch with the upload-size cap and the upload-name guard, and start sweeping the uploads.

    Gradio's own start-up lines are replaced by one that names this app's `--share` option (Gradio's hint says to
    edit `launch()`); pass `quiet=True` to print nothing.
    """
    demo.queue(max_size=MAX_QUEUE_SIZE)
    quiet = kwargs.pop("quiet", False)
    block = not kwargs.pop("prevent_thread_lock", False)
    # Gradio's /upload answers HTTP 400 for a file named ".." only after writing it to disk (route_utils.upload_fn);
    # the guard stops it before (see README "Demo" and usvcl_hf/demo_storage.py).
    guard = Middleware(UploadNameGuard, refuses=gradio_cannot_store, error_type=MultiPartException)
    launched = demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE, quiet=True,
                           prevent_thread_lock=True, app_kwargs={"middleware": [guard]}, **kwargs)
    demo.usvcl_storage.start()
    if not quiet:
        print(startup_message(demo.local_url, demo.share_url), flush=True)
    if block:
        demo.block_thread()
    return launched


def close_demo(demo: gr.Blocks) -> None:
    """Stop the server, then delete every upload and working copy it left."""
    demo.close()
    demo.usvcl_storage.close()


def startup_message(local_url: str, share_url: str | None) -> str:
    """Where the demo is served, and how to get a public link (this app's `--share`, not Gradio's `launch()`)."""
    if share_url:
        return f"usvcl demo on {local_url} and on the public link {share_url} (temporary, via gradio.live)"
    return f"usvcl demo on {local_url} (local only; `python app.py --share` also creates a public gradio.live link)"


def missing_model_message(model: str) -> str:
    """How to get a model when the requested one is not there."""
    return (
        f"Model {model!r} was not found.\n"
        f"The default model ({DEFAULT_MODEL}) is produced by the training pipeline: fine-tune "
        "(`bash experiments/recipe/run.sh`), then `python -m training.export` writes it (see README.md).\n"
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
    parser.add_argument("--crop-model", default=os.environ.get("USVCL_CROP_MODEL", DEFAULT_CROP_MODEL),
                        help=f"lesion-crop classifier folder or Hub id (the second view; needs the lesion model), or "
                             f"'{NO_MODEL}' (env USVCL_CROP_MODEL; default {DEFAULT_CROP_MODEL} when that folder "
                             "exists, else none)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help=f"host to bind (env GRADIO_SERVER_NAME; default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help=f"port (env GRADIO_SERVER_PORT; default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the model once, build the page and serve it; on Ctrl-C or SIGTERM, delete every file it wrote."""
    args = parse_args(argv)
    location = str(APP_DIR / DEFAULT_MODEL) if args.model == DEFAULT_MODEL else args.model
    looks_local = location != args.model or args.model.startswith((".", "/", "~"))
    if looks_local and not Path(location).expanduser().is_dir():
        raise SystemExit(missing_model_message(args.model))
    try:
        model, processor = load_model(location)
    except (OSError, ValueError) as error:
        raise SystemExit(f"{missing_model_message(args.model)}\nLoading failed with: {error}") from error
    lesion = load_demo_lesion_model(args.lesion_model, args.crop_model)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends the server like Ctrl-C does
    with private_gradio_folder():
        demo = build_demo(model, processor, args.model, lesion)
        try:
            launch_demo(demo, args.host, args.port, args.share)
        finally:
            close_demo(demo)


def load_demo_lesion_model(name: str, crop_name: str = NO_MODEL) -> LesionModel | None:
    """The lesion segmenter asked for, with the lesion-crop classifier asked for; None for `none` or when the
    default folder is absent (stated in the log). A crop model named without a lesion model is refused: the
    lesion model finds its crops."""
    location = str(APP_DIR / DEFAULT_LESION_MODEL) if name == DEFAULT_LESION_MODEL else name
    missing = name == DEFAULT_LESION_MODEL and not Path(location).is_dir()
    if name.lower() == NO_MODEL or missing:
        if crop_name.lower() not in (NO_MODEL, DEFAULT_CROP_MODEL):
            raise SystemExit(f"--crop-model {crop_name} needs a lesion model (it finds the lesion crops); pass one "
                             "with --lesion-model, or --crop-model none.")
        if missing:
            LOGGER.warning("no lesion model at %s: every frame counts and 'no lesion' is never answered", location)
        return None
    try:
        model, processor = load_lesion_model(location)
    except (OSError, ValueError) as error:
        raise SystemExit(f"Lesion model {name!r} could not be loaded: {error}\n"
                         f"Pass another with --lesion-model, or --lesion-model {NO_MODEL}.") from error
    return LesionModel(model, processor, name, *load_demo_crop_model(crop_name))


def load_demo_crop_model(name: str) -> tuple[Any, Any, str | None]:
    """(model, processor, name) of the lesion-crop classifier asked for; Nones for `none` or when the default
    folder is absent (stated in the log)."""
    if name.lower() == NO_MODEL:
        return None, None, None
    location = str(APP_DIR / DEFAULT_CROP_MODEL) if name == DEFAULT_CROP_MODEL else name
    if name == DEFAULT_CROP_MODEL and not Path(location).is_dir():
        LOGGER.warning("no lesion-crop model at %s: frames are classified whole only (one view)", location)
        return None, None, None
    try:
        model, processor = load_model(location)
        check_crop_model(model)
    except (OSError, ValueError) as error:
        raise SystemExit(f"Lesion-crop model {name!r} could not be loaded: {error}\n"
                         f"Pass another with --crop-model, or --crop-model {NO_MODEL}.") from error
    return model, processor, name


@contextlib.contextmanager
def private_gradio_folder():
    """Point GRADIO_TEMP_DIR at a fresh folder (inside the one it named, if any) for this server; delete it after."""
    parent = os.environ.get("GRADIO_TEMP_DIR")
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="usvcl-demo-", dir=parent))
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if parent:
            os.environ["GRADIO_TEMP_DIR"] = parent
        else:
            os.environ.pop("GRADIO_TEMP_DIR", None)


if __name__ == "__main__":
    main()
