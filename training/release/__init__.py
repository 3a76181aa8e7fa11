"""One resumable command from a prepared store to the shipped model folders.

    python -m training.release --store stores/bus_bra --output models/            # the shipped models
    python -m training.release --smoke --output runs/release_smoke/models          # tiny, end to end, minutes

Steps, in order (`cli.STEPS`): store, lesion (segmenter folds + final), boxes (the fold segmenters' lesion boxes),
whole (whole-image classifier, folds per seed + final), crop (lesion-crop classifier on those boxes), pool (folds
pooled with the recipe's choices), two_view (the recorded two-view choice), package (training.export with cards),
ood (out-of-distribution statistics), companions (the classifier names its lesion and crop companions), check (every
folder loads and follows its recipe), export (into `--output`, the only step that writes there). Each step writes
under `WORK/<step>/` and marks itself done last; a rerun skips finished steps, `--from STEP` reruns from there.

The recipes: `training/recipes/<model>.yaml`, one file a shipped model (`recipes`); `--smoke` applies
`training/recipes/smoke.yaml` (sizes only) and builds its data itself (`smoke_data`).
"""

from training.release.recipes import SHIPPED, Recipe, ReleaseError, load_recipe, load_recipes

__all__ = ["SHIPPED", "Recipe", "ReleaseError", "load_recipe", "load_recipes"]
