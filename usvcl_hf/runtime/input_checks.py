"""Inputs the model cannot judge, checked once for every door that decodes files (`predict_clip`, the demo).

- Too small: a frame with a side under `MIN_IMAGE_SIDE` pixels as decoded, before any crop
  (`image_processing_usvcl.image_size_problem`: `read_clip` applies it to files, `check_frame_sizes` to arrays,
  the image processor to what the `pipeline` door gives it).
- A still image in a file named like a video: `usvcl_hf.runtime.video.read_clip` reads the file's signature
  (`usvcl_hf.runtime.file_signatures`) and says what it is.
- Unlike the training images: an out-of-distribution score and warning (`usvcl_hf.runtime.ood`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..image_processing_usvcl import CHECKED_SIZES, image_size_problem
from .video import ClipReadError


def check_frame_sizes(frames: Sequence[np.ndarray], sources: Sequence[str]) -> None:
    """Raise `ClipReadError` (file and reason) for the first `(H, W)` frame, as decoded, too small to judge."""
    for frame, source in zip(frames, sources):
        problem = image_size_problem(*frame.shape[:2])
        if problem:
            raise ClipReadError(source, problem)


__all__ = ["CHECKED_SIZES", "check_frame_sizes"]
