"""Fine-tuning with leak-free, patient-grouped cross-validation (`python -m training.finetune`; usage in `cli`).

Modules, in the order a run uses them: `data` (the labelled store decoded once, datasets and loaders), `folds`
(patient-grouped folds and inner validation), `model` (the fold's fresh classifier and its processor), `train` (one
fold: training, selection on validation AUC, calibration, predictions), `label_efficiency`, `outputs` (metrics,
predictions, results.json / .md, manifest, figures), `cli` (`training_function` of named steps, `main`).
"""

from training.finetune.cli import main, training_function
from training.finetune.data import (
    SPLIT_PREFIX,
    LabeledData,
    SquareDataset,
    label_names,
    load_labeled_data,
    make_loader,
)
from training.finetune.model import (
    build_classifier,
    build_processor,
    class_weights,
    for_fold,
    resolve_image_size,
    save_model,
)
from training.finetune.outputs import (
    PREDICTION_COLUMNS,
    SELECTION,
    fold_metrics,
    mean_std,
    prediction_table,
    write_config,
    write_csv,
)
from training.finetune.train import (
    FoldOutcome,
    build_mask_head,
    build_optimizer,
    classification_loss,
    make_ema,
    mask_loss,
    predict_logits,
    run_fold,
    step_schedule,
    train_model,
)
from training.folds import Fold, check_no_leak, draw_label_subset, inner_split, make_folds

__all__ = [
    "PREDICTION_COLUMNS", "SELECTION", "SPLIT_PREFIX", "Fold", "FoldOutcome", "LabeledData", "SquareDataset",
    "build_classifier", "build_mask_head", "build_optimizer", "build_processor", "check_no_leak", "class_weights",
    "classification_loss", "draw_label_subset", "fold_metrics", "for_fold", "inner_split", "label_names",
    "load_labeled_data", "main", "make_ema", "make_folds", "make_loader", "mask_loss", "mean_std", "predict_logits",
    "prediction_table", "resolve_image_size", "run_fold", "save_model", "step_schedule", "train_model",
    "training_function", "write_config", "write_csv",
]
