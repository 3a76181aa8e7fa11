"""`python -m training.calibrate_site`: refit a model's calibration and threshold on a site's labelled images."""

from training.calibrate_site.cli import build_parser, calibrate, main
from training.calibrate_site.crossval import crossvalidate, report_table
from training.calibrate_site.fitting import (
    Aggregation,
    Calibration,
    answer_probabilities,
    fit_site_calibration,
    model_aggregation,
    model_calibration,
)
from training.calibrate_site.inputs import MIN_PER_CLASS, SiteInputError, SiteItem, read_labels
from training.calibrate_site.scoring import ItemScores, SiteModels, load_site_models, score_items

__all__ = [
    "MIN_PER_CLASS", "Aggregation", "Calibration", "ItemScores", "SiteInputError", "SiteItem", "SiteModels",
    "answer_probabilities", "build_parser", "calibrate", "crossvalidate", "fit_site_calibration",
    "load_site_models", "main", "model_aggregation", "model_calibration", "read_labels", "report_table",
    "score_items",
]
