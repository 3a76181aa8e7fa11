"""Half-precision weights that load as float32, the size limit, and the plain timm backbone file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import safetensors.torch
import timm
import torch

from training.export.base import BYTES_PER_MB, PAPER_ARXIV, WEIGHTS_FILE, ExportError, read_json
from training.export.checks import CHECK_ATOL, CHECK_SEED

EXPORT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}

DEFAULT_EXPORT_DTYPE = "float16"
KEEP_FLOAT32 = "feature_density."  # UsvclFeatureDensity buffers (training.export.ood) stay float32 in the weights file

LOAD_DTYPE = "float32"  # written to config.json: what `from_pretrained` gives by default

MAX_WEIGHTS_MB = 20.0

TIMM_WEIGHTS_FILE = "timm_backbone.safetensors"

TIMM_CHECK_SIZE = 64  # side of the input used to compare the timm file with the exported backbone


def half_state_dict(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's state dict with floating-point tensors cast to `dtype` (integer buffers and the
    out-of-distribution statistics, `KEEP_FLOAT32`, kept: a mean in half precision would shift small variances)."""
    return {
        name: tensor.detach().to(dtype).contiguous()
        if tensor.is_floating_point() and KEEP_FLOAT32 not in name else tensor.detach().contiguous()
        for name, tensor in model.state_dict().items()
    }


def check_file_size(path: Path, max_mb: float) -> float:
    """Size of `path` in MB; raise an `ExportError` when it exceeds `max_mb`."""
    size_mb = path.stat().st_size / BYTES_PER_MB
    if size_mb > max_mb:
        raise ExportError(
            f"{path.name} is {size_mb:.1f} MB, over the {max_mb:.0f} MB limit for a bundled model. Use a smaller "
            "backbone (e.g. densenet121), --dtype float16, or raise --max-size-mb if the folder is not committed."
        )
    return size_mb


def save_model(model: torch.nn.Module, folder: Path, dtype: torch.dtype, max_mb: float) -> float:
    """`save_pretrained` with half-precision weights and `"dtype": "float32"` in config.json; returns the MB."""
    model.config.dtype = LOAD_DTYPE
    model.save_pretrained(folder, state_dict=half_state_dict(model, dtype))
    if not (folder / WEIGHTS_FILE).is_file():
        raise ExportError(f"save_pretrained did not write one {WEIGHTS_FILE} in {folder} (sharded?).")
    config = read_json(folder / "config.json")
    if config.get("dtype") != LOAD_DTYPE or "auto_map" not in config:
        raise ExportError(f"config.json must say dtype={LOAD_DTYPE!r} and hold auto_map; got {config.get('dtype')!r}.")
    return check_file_size(folder / WEIGHTS_FILE, max_mb)


def timm_backbone_check(architecture: str, path: Path, reference: torch.nn.Module, in_chans: int) -> None:
    """Load `path` the way a timm user would; check every key is there and the features equal `reference`'s."""
    plain = timm.create_model(
        architecture, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, in_chans=in_chans, num_classes=0
    ).eval()
    missing = sorted(set(plain.state_dict()) - set(safetensors.torch.load_file(path)))
    if missing:
        raise ExportError(f"{path.name} lacks timm keys {missing[:5]} (timm loads it with strict=False).")
    shape = (1, in_chans, TIMM_CHECK_SIZE, TIMM_CHECK_SIZE)
    pixel_values = torch.from_numpy(np.random.default_rng(CHECK_SEED).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        if not torch.allclose(plain(pixel_values), reference.eval()(pixel_values), atol=CHECK_ATOL):
            raise ExportError(f"timm loads {path.name} into a model that gives other features than the backbone.")


def sort_safetensors_metadata(path: Path) -> None:
    """Rewrite the header of a safetensors file with its `__metadata__` keys sorted (the writer orders them at random
    in each process), so that the same weights always give the same bytes."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > length:
        raise ExportError(f"{path.name}: the sorted header is longer than the original")
    path.write_bytes(data[:8] + text.ljust(length) + data[8 + length :])


def save_timm_backbone(encoder: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """Write the encoder's backbone as a plain timm state dict (timm key names, its own stem) and check timm loads it.

    `encoder` is the exported `UsvclModel` loaded back, so both weight files hold the same (rounded) numbers.
    """
    path = folder / TIMM_WEIGHTS_FILE
    config = encoder.config
    metadata = {"format": "pt", "architecture": config.backbone, "in_chans": str(config.in_chans),
                "num_classes": "0", "source": f"usvcl encoder (arXiv {PAPER_ARXIV} reproduction)"}
    safetensors.torch.save_file(half_state_dict(encoder.backbone, dtype), path, metadata=metadata)
    sort_safetensors_metadata(path)
    timm_backbone_check(config.backbone, path, encoder.backbone, config.in_chans)


__all__ = ["DEFAULT_EXPORT_DTYPE", "EXPORT_DTYPES", "MAX_WEIGHTS_MB", "save_model", "save_timm_backbone"]
