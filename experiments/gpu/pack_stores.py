"""Re-encode frame stores compactly (JPEG, shorter side capped) to carry them to a lent GPU machine.

The device tool carries at most 64 MiB with the working tree, and the PNG stores (covid_blues 47 MB, pocus 49 MB,
bus_bra 67 MB) do not fit. This writes each store again with the same rows and columns, its images as JPEG of
`--quality` with the shorter side at most `--max-side`, into `--output/<store name>`. The output is derived data:
it goes to an ignored folder and is never committed (COVID-BLUES is CC BY-NC-ND).

Usage:
    python experiments/gpu/pack_stores.py --stores stores/covid_blues stores/bus_bra \
        --output .gpu_payload/stores [--quality 80] [--max-side 224]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from training.prepare_data.store_rewrite import rewrite_store_images
from usvcl_hf.image_processing_usvcl import to_grey_uint8

DEFAULT_QUALITY = 80
DEFAULT_MAX_SIDE = 224


def jpeg_bytes(image: Image.Image, quality: int, max_side: int) -> bytes:
    """Grey JPEG of `image` with its shorter side at most `max_side` (aspect kept, only ever downscaled)."""
    grey = Image.fromarray(to_grey_uint8(image))
    shorter = min(grey.size)
    if shorter > max_side:
        scale = max_side / shorter
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    grey.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", nargs="+", type=Path, required=True, help="store folders to pack")
    parser.add_argument("--output", type=Path, required=True, help="folder for the packed stores (ignored by git)")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality (1-95)")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="cap on the shorter side, pixels")
    args = parser.parse_args(argv)
    total = 0
    for source in args.stores:
        size = rewrite_store_images(source, args.output / source.name,
                                    lambda image: jpeg_bytes(image, args.quality, args.max_side),
                                    progress=lambda images, name=source.name: tqdm(images, desc=name, unit="image"))
        total += size
        print(f"{source} -> {args.output / source.name}: {size / 2**20:.1f} MiB")
    print(f"Packed {len(args.stores)} stores ({total / 2**20:.1f} MiB) into {args.output}.")


if __name__ == "__main__":
    main()
