"""DICOM pixels as grey uint8, shown as the file says they should be.

The modality LUT (or rescale) and the VOI LUT (or window) are applied when the file has them (pydicom's
`apply_modality_lut`, `apply_voi_lut`), and the result is scaled from the range those steps give (unsigned
`BitsStored` bits: 0 .. 2**BitsStored - 1) onto 0..255 by the one grey conversion (`to_grey_uint8`), never by the
image's own min/max; colour frames are scaled by `BitsStored`. Only the tags in `DICOM_DISPLAY_TAGS` (and
PhotometricInterpretation) are used. This module may use pydicom, so the Hub model files never import it.
"""

from __future__ import annotations

import numpy as np

from ..image_processing_usvcl import UINT8_MAX, to_grey_uint8

DICOM_DISPLAY_TAGS = (
    "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
)


def dicom_frames_to_grey(frames: np.ndarray, header) -> np.ndarray:
    """(T, H, W) or (T, H, W, 3) decoded DICOM frames -> (T, H, W) uint8 by the header's display tags (module doc);
    MONOCHROME1 is inverted."""
    if frames.ndim == 4:  # (T, H, W, 3) colour, already converted to RGB by pydicom: no LUTs, scaled by BitsStored
        value_range = (0.0, float(2 ** _bits_stored(header, frames) - 1))
        return np.stack([to_grey_uint8(frame, value_range) for frame in frames])
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(frames, header), header)  # (T, H, W)
    value_range = dicom_display_range(header, frames)
    grey = np.stack([to_grey_uint8(frame, value_range) for frame in values])  # the one grey conversion
    if header.get("PhotometricInterpretation", "") == "MONOCHROME1":
        grey = UINT8_MAX - grey
    return grey


def _bits_stored(header, frames: np.ndarray) -> int:
    """BitsStored, else BitsAllocated, else the decoded type's bits."""
    return int(header.get("BitsStored") or header.get("BitsAllocated") or frames.dtype.itemsize * 8)


def _lut_range(sequence) -> tuple[float, float]:
    """Output range of a DICOM LUT: 0 .. 2**bits - 1, bits the third value of its LUTDescriptor."""
    return 0.0, float(2 ** int(sequence[0].LUTDescriptor[2]) - 1)


def dicom_display_range(header, frames: np.ndarray) -> tuple[float, float]:
    """(low, high) of grey frames after `apply_modality_lut` and `apply_voi_lut`, as pydicom computes them: a VOI
    LUT's or modality LUT's output bits, else the stored bits (signed by PixelRepresentation) through the rescale.
    A window maps onto this same range."""
    if header.get("VOILUTSequence"):
        return _lut_range(header.VOILUTSequence)
    if header.get("ModalityLUTSequence"):
        return _lut_range(header.ModalityLUTSequence)
    bits = _bits_stored(header, frames)
    low, high = (0, 2**bits - 1) if int(header.get("PixelRepresentation") or 0) == 0 else (
        -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = header.get("RescaleSlope"), header.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
    return float(low), float(high)


__all__ = ["DICOM_DISPLAY_TAGS", "dicom_display_range", "dicom_frames_to_grey"]
