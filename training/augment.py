"""Ultrasound-suited augmentations of greyscale frames, deterministic under an explicit generator.

One view = a square crop (random resized crop on top of "shorter side to ``size`` + random square crop"), a
small rotation and an optional horizontal flip, rendered in one bilinear ``grid_sample``; then gain, contrast,
gamma and speckle-like multiplicative noise. No colour jitter: the frames are greyscale. Every random number
comes from the ``numpy.random.Generator`` passed in (torch noise from a ``torch.Generator`` seeded by it), so the
result depends only on that generator, never on global RNG state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from usvcl_hf.image_processing_usvcl import UINT8_MAX

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


AUGMENT_POLICIES = {  # named strengths for fine-tuning (`augment_policy`); horizontal flips only (depth stays down)
    "standard": AugmentConfig(),
    "light": AugmentConfig(crop_area=(0.8, 1.0), crop_aspect=(0.9, 1 / 0.9), max_rotation_degrees=5.0,
                           gain=(0.9, 1.1), contrast=(0.9, 1.1), gamma=(0.9, 1.1), speckle_sigma=(0.0, 0.05)),
    "strong": AugmentConfig(crop_area=(0.4, 1.0), max_rotation_degrees=15.0, gain=(0.7, 1.3), contrast=(0.7, 1.3),
                            gamma=(0.7, 1.4), speckle_sigma=(0.0, 0.15)),
    "flip": AugmentConfig(crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), max_rotation_degrees=0.0, gain=(1.0, 1.0),
                          contrast=(1.0, 1.0), gamma=(1.0, 1.0), speckle_sigma=(0.0, 0.0)),
}


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


PARAM_NAMES = tuple(field.name for field in dataclasses.fields(ViewParams))
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


def params_tensor(views: list[ViewParams]) -> torch.Tensor:
    """`(B, 10)` float32 rows of the ``ViewParams`` fields, in field order (for batched rendering)."""
    return torch.tensor([[float(getattr(view, name)) for name in PARAM_NAMES] for view in views],
                        dtype=torch.float32)


def affine_thetas(params: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`(B, 2, 3)` matrices mapping output coordinates in [-1, 1] to input coordinates in [-1, 1] (grid_sample)
    from `(B, 10)` view parameters."""
    column = {name: params[:, index] for index, name in enumerate(PARAM_NAMES)}  # each (B,)
    cos, sin = torch.cos(column["rotation_radians"]), torch.sin(column["rotation_radians"])
    half_width = column["crop_width"] / width  # crop half-extent in normalised input units
    half_height = column["crop_height"] / height
    flip = 1.0 - 2.0 * column["flip"]
    centre_x = 2 * column["centre_column"] / width - 1
    centre_y = 2 * column["centre_row"] / height - 1
    # Rotation is done in pixel units, so scale it back by the frame's aspect for non-square frames.
    first = torch.stack([flip * half_width * cos, -half_height * sin * height / width, centre_x], dim=-1)  # (B, 3)
    second = torch.stack([flip * half_width * sin * width / height, half_height * cos, centre_y], dim=-1)  # (B, 3)
    return torch.stack([first, second], dim=1)  # (B, 2, 3)


def render_views(frames: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """Cut each view's (rotated, flipped) crop out of `frames (B, H, W)` and resample it to `(B, size, size)`.

    Runs on the frames' device (a GPU renders a whole training batch in one call)."""
    batch, height, width = frames.shape
    theta = affine_thetas(params.to(frames.device), height, width)  # (B, 2, 3)
    source = frames.to(torch.float32)[:, None]  # (B, H, W) -> (B, 1, H, W)
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)  # (B, size, size, 2)
    views = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return views[:, 0]  # (B, 1, size, size) -> (B, size, size)


def adjust_intensities(views: torch.Tensor, params: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """Contrast, gain, gamma and multiplicative speckle `1 + sigma * noise` on `views (B, S, S)` in [0, 255]:

    v <- (v - mean(v)) * contrast + mean(v);  v <- clamp(v, 0, 255) * gain;  v <- 255 * clamp(v / 255, 0, 1) ** gamma;
    v <- v * (1 + sigma * noise)  (noise `(B, S, S)` standard normal, or None for no speckle); clamp to [0, 255].
    """
    column = {name: params[:, index].to(views.device).view(-1, 1, 1) for index, name in enumerate(PARAM_NAMES)}
    mean = views.mean(dim=(-2, -1), keepdim=True)  # (B, 1, 1)
    views = (views - mean) * column["contrast"] + mean
    views = views.clamp(0, UINT8_MAX) * column["gain"]
    views = UINT8_MAX * (views / UINT8_MAX).clamp(0, 1) ** column["gamma"]
    if noise is not None:
        views = views * (1 + column["speckle_sigma"] * noise)
    return views.clamp(0, UINT8_MAX)


def render_view(frame: torch.Tensor, params: ViewParams, size: int) -> torch.Tensor:
    """Cut the view's (rotated, flipped) crop out of ``frame`` (H, W) and resample it to (size, size) float."""
    return render_views(frame[None], params_tensor([params]), size)[0]  # (1, size, size) -> (size, size)


def adjust_intensity(view: torch.Tensor, params: ViewParams, noise_generator: torch.Generator) -> torch.Tensor:
    """Apply contrast, gain, gamma and multiplicative speckle noise to a (size, size) view in [0, 255]."""
    noise = torch.randn(view.shape, generator=noise_generator)[None] if params.speckle_sigma > 0 else None
    return adjust_intensities(view[None], params_tensor([params]), noise)[0]  # (1, S, S) -> (S, S)


def augment_batch(squares: torch.Tensor, params: torch.Tensor, noise_seed: int) -> torch.Tensor:
    """Render and adjust a batch of views on the squares' device: `squares (B, S, S)` in [0, 1] and `(B, 10)`
    view parameters (`params_tensor`) -> `(B, S, S)` in [0, 1]. The speckle noise comes from a generator on that
    device seeded with `noise_seed`, so a batch is reproducible on the same device."""
    size = squares.shape[-1]
    views = render_views(squares * UINT8_MAX, params, size)  # (B, S, S) in [0, 255]
    noise = None
    if bool((params[:, PARAM_NAMES.index("speckle_sigma")] > 0).any()):
        generator = torch.Generator(device=squares.device).manual_seed(noise_seed)
        noise = torch.randn(views.shape, generator=generator, device=squares.device)  # (B, S, S)
    return adjust_intensities(views, params, noise) / UINT8_MAX


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
