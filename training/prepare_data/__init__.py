"""Turn folders of clips or labelled images into a frame store (`datasets.Dataset.save_to_disk`).

`python -m training.prepare_data videos|images ...` (usage: `training.prepare_data.cli`). Modules: `sources`
(which files, which patient / label / fold ids), `decode` (files -> stored PNG frames, in parallel), `store` (rows,
features, the store written atomically with its reports), `cli`.
"""

from training.prepare_data.cli import build_parser, main, run_images, run_videos
from training.prepare_data.sources import PrepareError

__all__ = ["PrepareError", "build_parser", "main", "run_images", "run_videos"]
