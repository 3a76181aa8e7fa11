"""Ultrasound-suited augmentations of greyscale frames, deterministic under an explicit generator.

One view = a square crop (random resized crop on top of "shorter side to ``size`` + random square crop"), a
small rotation and an optional horizontal flip, rendered in one bilinear ``grid_sample``; then gain, contrast,
gamma and speckle-like multiplicative noise. No colour jitter: the frames are greyscale. Every random number
comes from the ``numpy.random.Generator`` passed in (torch noise from a ``torch.Generator`` seeded by it), so the
result depends only on that generator, never on global RNG state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

UINT8_MAX = 255.0
SEED_BOUND = 2**62


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random view parameters; ``(low, high)`` pairs are sampled uniformly."""

    crop_area: tuple[float, float] = (0.6, 1.0)  # share of the base square kept by the random resized crop
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of that crop (log-uniform)
    max_rotation_degrees: float = 10.0
    flip_probability: float = 0.5
    gain: tuple[float, float] = (0.8, 1.2)  # multiplies all intensities
    contrast: tuple[float, float] = (0.8, 1.2)  # scales deviations from the view's mean
    gamma: tuple[float, float] = (0.8, 1.25)  # applied to intensities in [0, 1]
    speckle_sigma: tuple[float, float] = (0.0, 0.1)  # std of the multiplicative noise factor (1 + sigma * n)


@dataclass(frozen=True)
class ViewParams:
    """Geometry and intensity parameters of one view (all in the source frame's pixel units)."""

    centre_row: float
    centre_column: float
    crop_height: float
    crop_width: float
    rotation_radians: float
    flip: bool
    gain: float
    contrast: float
    gamma: float
    speckle_sigma: float


def centre_view(height: int, width: int) -> ViewParams:
    """Deterministic view: the centred square of side min(height, width), no photometric change."""
    side = float(min(height, width))
    return ViewParams(height / 2, width / 2, side, side, 0.0, False, 1.0, 1.0, 1.0, 0.0)


def sample_view(height: int, width: int, rng: np.random.Generator, config: AugmentConfig) -> ViewParams:
    """Draw a random view of a ``height`` x ``width`` frame.

    Base: a random square of side min(height, width) (= resize the shorter side, random square crop). Inside
    it, a random resized crop with area share in ``config.crop_area`` and aspect in ``config.crop_aspect``.
    """
    side = float(min(height, width))
    base_row = rng.uniform(side / 2, height - side / 2)
    base_column = rng.uniform(side / 2, width - side / 2)
    area = rng.uniform(*config.crop_area) * side * side
    aspect = math.exp(rng.uniform(math.log(config.crop_aspect[0]), math.log(config.crop_aspect[1])))
    crop_width = min(side, math.sqrt(area * aspect))
    crop_height = min(side, math.sqrt(area / aspect))
    centre_row = base_row + rng.uniform(-(side - crop_height) / 2, (side - crop_height) / 2)
    centre_column = base_column + rng.uniform(-(side - crop_width) / 2, (side - crop_width) / 2)
    rotation = math.radians(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees))
    return ViewParams(
        centre_row=centre_row,
        centre_column=centre_column,
        crop_height=crop_height,
        crop_width=crop_width,
        rotation_radians=rotation,
        flip=bool(rng.random() < config.flip_probability),
        gain=rng.uniform(*config.gain),
        contrast=rng.uniform(*config.contrast),
        gamma=rng.uniform(*config.gamma),
        speckle_sigma=rng.uniform(*config.speckle_sigma),
    )


def _affine_theta(params: ViewParams, height: int, width: int) -> torch.Tensor:
    """(2, 3) matrix mapping output coordinates in [-1, 1] to input coordinates in [-1, 1] (grid_sample)."""
    cos, sin = math.cos(params.rotation_radians), math.sin(params.rotation_radians)
    half_width = params.crop_width / width  # crop half-extent in normalised input units
    half_height = params.crop_height / height
    flip = -1.0 if params.flip else 1.0
    centre_x = 2 * params.centre_column / width - 1
    centre_y = 2 * params.centre_row / height - 1
    # Rotation is done in pixel units, so scale it back by the frame's aspect for non-square frames.
    return torch.tensor(
        [
            [flip * half_width * cos, -half_height * sin * height / width, centre_x],
            [flip * half_width * sin * width / height, half_height * cos, centre_y],
        ],
        dtype=torch.float32,
    )


def render_view(frame: torch.Tensor, params: ViewParams, size: int) -> torch.Tensor:
    """Cut the view's (rotated, flipped) crop out of ``frame`` (H, W) and resample it to (size, size) float."""
    height, width = frame.shape
    theta = _affine_theta(params, height, width)[None]  # (1, 2, 3)
    source = frame.to(torch.float32)[None, None]  # (H, W) -> (1, 1, H, W)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)  # (1, size, size, 2)
    view = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return view[0, 0]  # (1, 1, size, size) -> (size, size)


def adjust_intensity(view: torch.Tensor, params: ViewParams, noise_generator: torch.Generator) -> torch.Tensor:
    """Apply contrast, gain, gamma and multiplicative speckle noise to a (size, size) view in [0, 255]."""
    mean = view.mean()
    view = (view - mean) * params.contrast + mean
    view = view.clamp(0, UINT8_MAX) * params.gain
    view = UINT8_MAX * (view / UINT8_MAX).clamp(0, 1) ** params.gamma
    if params.speckle_sigma > 0:
        noise = torch.randn(view.shape, generator=noise_generator)  # (size, size)
        view = view * (1 + params.speckle_sigma * noise)
    return view.clamp(0, UINT8_MAX)


def augment_frame(
    frame: np.ndarray | torch.Tensor,
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
    *,
    augment: bool = True,
) -> torch.Tensor:
    """One (size, size) float32 view in [0, 255] of a (H, W) uint8 greyscale frame.

    With ``augment=False`` the view is the centred square, resized, with no photometric change.
    """
    config = config or AugmentConfig()
    frame = torch.as_tensor(frame)
    height, width = frame.shape
    if not augment:
        return render_view(frame, centre_view(height, width), size)
    params = sample_view(height, width, rng, config)
    noise_generator = torch.Generator().manual_seed(int(rng.integers(SEED_BOUND)))
    return adjust_intensity(render_view(frame, params, size), params, noise_generator)
