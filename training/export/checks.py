"""export_check.json: a seeded input and image, and the outputs the exported weights gave at export time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import transformers

from training.export.base import CHECK_FILE, ExportError
from usvcl_hf import UsvclConfig, UsvclForImageClassification, UsvclImageProcessor

CHECK_SEED = 2408_10600

CHECK_IMAGE_SHAPE = (96, 128)  # (H, W) of the seeded uint8 check image; not square on purpose (tests the resize)

CHECK_ATOL = 1e-4  # same weights, same maths, float32 on CPU: differences come only from kernel choice

MAX_PROBABILITY_SHIFT = 0.02  # largest change of a class probability that half precision may cause


def check_input(config: UsvclConfig) -> np.ndarray:
    """The seeded `(1, C, S, S)` float32 input recorded in `export_check.json`."""
    rng = np.random.default_rng(CHECK_SEED)
    return rng.standard_normal((1, config.in_chans, config.image_size, config.image_size)).astype(np.float32)


def check_image() -> np.ndarray:
    """The seeded `(H, W)` uint8 image recorded in `export_check.json` (goes through the image processor)."""
    return np.random.default_rng(CHECK_SEED).integers(0, 256, CHECK_IMAGE_SHAPE, dtype=np.uint8)


def describe_inputs(pixel_values: np.ndarray) -> dict[str, Any]:
    """How a test rebuilds the check inputs, with checksums to tell a changed generator from a changed model."""
    return {
        "pixel_values": {
            "generator": "numpy.random.default_rng(seed).standard_normal(shape).astype(float32)",
            "seed": CHECK_SEED,
            "shape": list(pixel_values.shape),
            "sum": float(pixel_values.sum(dtype=np.float64)),
        },
        "image": {
            "generator": "numpy.random.default_rng(seed).integers(0, 256, shape, dtype=uint8)",
            "seed": CHECK_SEED,
            "shape": list(CHECK_IMAGE_SHAPE),
            "sum": int(check_image().sum(dtype=np.int64)),
        },
    }


def record_outputs(model: torch.nn.Module, processor: UsvclImageProcessor, output_names: tuple[str, ...]) -> dict:
    """Outputs of `model` (float32, eval) on the seeded input and on the processed seeded image."""
    pixel_values = torch.from_numpy(check_input(model.config))
    image_pixels = processor(check_image(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        on_tensor, on_image = model(pixel_values), model(image_pixels)
    return {
        "pixel_values": {name: on_tensor[name].tolist() for name in output_names},
        "image": {name: on_image[name].tolist() for name in output_names},
    }


def write_check(
    folder: Path, model: torch.nn.Module, processor: UsvclImageProcessor, kind: str, dtype: str
) -> torch.nn.Module:
    """Load the exported folder back (float32), write `export_check.json` with its outputs; return the loaded model."""
    model_class = UsvclForImageClassification if kind == "classifier" else type(model)
    reloaded = model_class.from_pretrained(folder).eval()
    loaded_dtype = next(reloaded.parameters()).dtype
    if loaded_dtype != torch.float32:
        raise ExportError(f"The exported model loads as {loaded_dtype}, not float32: check config.json `dtype`.")
    output_names = ("logits",) if kind == "classifier" else ("embeddings", "pooler_output")
    record = {
        "kind": kind,
        "model_class": model_class.__name__,
        "weights_dtype": dtype,
        "loaded_dtype": "float32",
        "atol": CHECK_ATOL,
        "inputs": describe_inputs(check_input(model.config)),
        "outputs": record_outputs(reloaded, processor, output_names),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__},
    }
    if kind == "classifier":
        record["max_probability_shift_from_float32"] = probability_shift(model, reloaded)
    (folder / CHECK_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return reloaded


EXPORT_INPUTS_KEY = "export_inputs"  # how the folder was exported (repo id, data, source): what a re-export reads


def outputs_within(recorded: object, new: object, atol: float) -> bool:
    """True when two recorded output trees (nested dicts / lists of numbers) have one shape and differ by <= atol."""
    if isinstance(recorded, dict) and isinstance(new, dict):
        return recorded.keys() == new.keys() and all(outputs_within(recorded[k], new[k], atol) for k in recorded)
    if isinstance(recorded, list) and isinstance(new, list):
        return len(recorded) == len(new) and all(outputs_within(a, b, atol) for a, b in zip(recorded, new))
    if isinstance(recorded, (int, float)) and isinstance(new, (int, float)):
        return abs(float(recorded) - float(new)) <= atol
    return recorded == new


def keep_recorded_outputs(folder: Path, previous: dict[str, Any] | None) -> None:
    """Keep the outputs (and versions) the folder's previous `export_check.json` recorded when the re-export's are
    within its `atol` on the same inputs: thread count or kernel choice moves the last float32 digits, and the
    fixture should not change for that. Outputs that moved further are recorded as new."""
    path = folder / CHECK_FILE
    record = json.loads(path.read_text())
    if not previous or previous.get("inputs") != record["inputs"]:
        return
    if outputs_within(previous.get("outputs"), record["outputs"], float(record["atol"])):
        record["outputs"], record["versions"] = previous["outputs"], previous.get("versions", record["versions"])
        path.write_text(json.dumps(record, indent=2) + "\n")


def previous_check(folder: Path) -> dict[str, Any] | None:
    """The `export_check.json` of a folder an export is about to replace (None when there is none)."""
    path = folder / CHECK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def record_export_inputs(folder: Path, inputs: dict[str, Any]) -> None:
    """Add `inputs` (repo id, data sets, source folder name...) to the folder's `export_check.json`."""
    path = folder / CHECK_FILE
    record = json.loads(path.read_text())
    record[EXPORT_INPUTS_KEY] = inputs
    path.write_text(json.dumps(record, indent=2) + "\n")


def recorded_export_inputs(folder: Path) -> dict[str, Any]:
    """The `export_inputs` of an exported folder's `export_check.json` (`{}` for a folder exported without them)."""
    path = folder / CHECK_FILE
    if not path.is_file():
        raise ExportError(f"{folder}: not an exported folder ({CHECK_FILE} is missing)")
    return dict(json.loads(path.read_text()).get(EXPORT_INPUTS_KEY) or {})


def probability_shift(original: torch.nn.Module, exported: torch.nn.Module) -> float:
    """Largest class-probability change that half precision caused on the check input; fail if too large."""
    pixel_values = torch.from_numpy(check_input(original.config))
    with torch.no_grad():
        before = original.eval()(pixel_values).logits.softmax(-1)
        after = exported(pixel_values).logits.softmax(-1)
    shift = float((before - after).abs().max())
    if shift > MAX_PROBABILITY_SHIFT:
        raise ExportError(f"Half precision changes a probability by {shift:.4f} (> {MAX_PROBABILITY_SHIFT}).")
    return shift


__all__ = ["CHECK_ATOL", "EXPORT_INPUTS_KEY", "check_image", "check_input", "keep_recorded_outputs",
           "probability_shift", "record_export_inputs", "recorded_export_inputs", "write_check"]
