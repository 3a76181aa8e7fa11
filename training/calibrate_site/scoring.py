"""The site's images run through the model as the demo runs them: `predict_clip` with all the model's views, its
lesion step and its clip aggregation; what is kept is each kept frame's uncalibrated score per view, so that any
calibration (the model's own, or one fitted on the site) gives the answer the demo would give with it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.calibrate_site.inputs import SiteInputError, SiteItem, name_files
from usvcl_hf.configuration_usvcl import TWO_VIEW_ROLES
from usvcl_hf.pipeline_usvcl import companion_location
from usvcl_hf.runtime.aggregation import logit
from usvcl_hf.runtime.clip_prediction import CROP_VIEW, WHOLE_VIEW, check_crop_model, load_model, predict_clip
from usvcl_hf.runtime.lesion import load_lesion_model
from usvcl_hf.runtime.video import ClipReadError


@dataclasses.dataclass
class SiteModels:
    """What the demo runs for a model folder: the classifier and, when its config names them, the lesion
    segmenter and the lesion-crop classifier (two views); `folders` says where each was loaded from."""

    model: Any
    processor: Any
    folders: dict[str, Path]  # "model", and "lesion_model" / "crop_model" for two views
    lesion_model: Any = None
    lesion_processor: Any = None
    crop_model: Any = None
    crop_processor: Any = None

    @property
    def view_models(self) -> dict[str, Any]:
        """View name -> the classifier that scores it (`WHOLE_VIEW`, and `CROP_VIEW` for two views)."""
        return {WHOLE_VIEW: self.model, **({CROP_VIEW: self.crop_model} if self.crop_model is not None else {})}


@dataclasses.dataclass
class ItemScores:
    """One site item as the model saw it."""

    views: dict[str, np.ndarray]  # view -> (T,) uncalibrated logit difference (malignant - benign) of each kept frame
    lesion_frames: np.ndarray  # (T,) bool: the frames the answer aggregates over (all without a lesion model)

    @property
    def answered(self) -> bool:
        """False when the lesion step found no lesion frame (the demo answers "no lesion")."""
        return bool(self.lesion_frames.any())


def companion_folders(model: Any, model_dir: Path) -> dict[str, Path]:
    """The two-view companions the model's config names, as local folders (inside or beside the model's folder,
    `usvcl_hf.pipeline_usvcl.companion_location`); {} for a one-view model."""
    named = getattr(model.config, "two_view_models", None) or {}
    folders = {role: Path(companion_location(named[role], model)) for role in TWO_VIEW_ROLES if role in named}
    missing = [f"{role} {named[role]!r}" for role, folder in folders.items() if not folder.is_dir()]
    if missing:
        raise SiteInputError(f"{model_dir}: its companions {name_files(missing)} are not folders inside or beside it; "
                             "put them there (the site-calibrated folder carries them).")
    return folders


def load_site_models(model_dir: Path) -> SiteModels:
    """The models the demo runs for `model_dir` (as `app.py --model` loads them, BatchNorms folded)."""
    try:
        model, processor = load_model(model_dir)
    except (OSError, ValueError) as error:
        raise SiteInputError(f"{model_dir}: cannot be loaded as a usvcl classifier ({error}).") from error
    folders = companion_folders(model, model_dir)
    models = SiteModels(model, processor, {"model": model_dir, **folders})
    if folders:
        models.lesion_model, models.lesion_processor = load_lesion_model(folders["lesion_model"])
        models.crop_model, models.crop_processor = load_model(folders["crop_model"])
        check_crop_model(models.crop_model)
    return models


@contextlib.contextmanager
def uncalibrated(models: SiteModels) -> Iterator[None]:
    """The classifiers with temperature 1 and bias 0 while inside (their own calibration back afterwards)."""
    saved = {name: (model.config.calibration_temperature, model.config.calibration_bias)
             for name, model in models.view_models.items()}
    try:
        for model in models.view_models.values():
            model.config.calibration_temperature, model.config.calibration_bias = 1.0, 0.0
        yield
    finally:
        for name, model in models.view_models.items():
            model.config.calibration_temperature, model.config.calibration_bias = saved[name]


def score_item(models: SiteModels, path: Path) -> tuple[ItemScores, float, str | None]:
    """One file through `predict_clip` (uncalibrated): its scores, OOD score and OOD warning."""
    prediction = predict_clip(models.model, models.processor, str(path), lesion_model=models.lesion_model,
                              lesion_processor=models.lesion_processor, crop_model=models.crop_model,
                              crop_processor=models.crop_processor)
    probabilities = prediction.view_probabilities or {WHOLE_VIEW: prediction.frame_probabilities}
    views = {name: logit(values) for name, values in probabilities.items()}  # (T,) each
    return ItemScores(views, prediction.lesion_frames), prediction.ood_score, prediction.ood_warning


def score_items(models: SiteModels, items: Sequence[SiteItem]) -> list[ItemScores]:
    """Every item scored; `SiteInputError` naming every file the model refuses (unreadable, too small, unlike the
    training images by the OOD score) with its reason."""
    scores, refused = [], []
    with uncalibrated(models):
        for item in items:
            try:
                item_scores, ood_score, warning = score_item(models, item.path)
            except (ClipReadError, ValueError, OSError) as error:
                refused.append(f"{item.path} ({getattr(error, 'reason', error)})")
                continue
            if warning is not None:
                refused.append(f"{item.path} (not like the training images: OOD score {ood_score:.2f} > "
                               f"{models.model.config.ood_threshold:.2f})")
            scores.append(item_scores)
    if refused:
        raise SiteInputError(f"the model refuses {len(refused)} files: {name_files(refused)}.")
    return scores

