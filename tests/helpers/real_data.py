"""Where the tests find the real data and stores (they skip when these are absent).

- Data: `../shared/data` next to the repository, or the folder `USVCL_DATA` names.
- Stores: `stores/` in the repository root, where docs/training.md builds them, or the folder `USVCL_STORES` names.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers.paths import REPO_ROOT

DATA_ROOT = Path(os.environ.get("USVCL_DATA", REPO_ROOT.parent / "shared" / "data"))
STORES_ROOT = Path(os.environ.get("USVCL_STORES", REPO_ROOT / "stores"))


def store_path(name: str) -> Path:
    """The frame store `name` (e.g. `"bus_bra"`) built by `training.prepare_data`."""
    return STORES_ROOT / name
