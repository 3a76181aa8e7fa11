"""Export a trained usvcl model as a Hub-ready folder (weights in half precision, code, processor, card, plots).

Three kinds:

- `classifier`: a fine-tuned `UsvclForImageClassification` folder plus its `results.json` -> a folder that
  `AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)` and
  `pipeline("image-classification", model=folder, trust_remote_code=True)` load, with the model card rendered from
  `model_card.md` and the evaluation plots.
- `backbone`: a pretraining output (`PRETRAIN_OUTPUT/model`, a `UsvclForContrastivePretraining` folder) -> the
  encoder (`AutoModel` gives L2-normalised embeddings) plus `timm_backbone.safetensors`, a plain timm state dict
  that `timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...), in_chans=1, num_classes=0)`
  loads.
- `lesion`: the lesion segmenter of `training.lesion.train` (`RUN/final_model` plus `RUN/results.json`), card from
  `lesion_card.md` (`training/export/lesion.py`).

Weights are stored in float16 (or bfloat16) and load back as float32: `config.json` says `"dtype": "float32"`, which
transformers 5 reads when `from_pretrained` is called with its default `dtype="auto"`. Every folder holds
`export_check.json`: a seeded input and the outputs the exported weights gave at export time, so a test can check
that the bundled model still gives them. The folder is written next to `--output` and renamed into place; it is
never edited by hand.

    python -m training.export --kind classifier --model-dir RUN/final_model --results RUN/results.json \
        --pretrain-dir PRETRAIN_RUN --output models/usvcl-lite0-busbra
    python -m training.export --kind backbone --pretrain-dir PRETRAIN_RUN --output models/usvcl-resnet10t-backbone
    python -m training.export --kind lesion --model-dir runs/lesion/final_model --results runs/lesion/results.json \
        --output models/usvcl-lesion-busbra

Layout (one concern a module): `base` (error, JSON, file names), `licences` (data sets and the licence that
follows), `runs` (results.json, pretraining folder), `weights` (half precision, timm file), `checks`
(export_check.json), `cards` (model cards), `folders` (modes, plots), `exports` (classifier, backbone, card
again; the decision rule), `lesion` (the lesion segmenter), `cli`.
"""

from training.export.base import BYTES_PER_MB, CHECK_FILE, RESULTS_COPY, WEIGHTS_FILE, ExportError, read_json
from training.export.cards import backbone_card, classifier_card
from training.export.checks import (
    CHECK_ATOL,
    CHECK_SEED,
    EXPORT_INPUTS_KEY,
    check_image,
    check_input,
    keep_recorded_outputs,
    probability_shift,
    record_export_inputs,
    recorded_export_inputs,
    write_check,
)
from training.export.cli import build_parser, main
from training.export.exports import (
    export_backbone,
    export_classifier,
    rerender_classifier_card,
    set_decision_rule,
    set_two_views,
)
from training.export.folders import finish_folder
from training.export.lesion import export_lesion
from training.export.licences import DATASETS, DatasetInfo, choose_license, detect_datasets
from training.export.runs import (
    check_results,
    find_pretrain_summary,
    infer_pretrain_dir,
    load_processor,
    pretrain_steps_run,
    read_finetune_run,
    resolve_pretrain_data,
)
from training.export.weights import (
    DEFAULT_EXPORT_DTYPE,
    EXPORT_DTYPES,
    KEEP_FLOAT32,
    MAX_WEIGHTS_MB,
    TIMM_WEIGHTS_FILE,
    half_state_dict,
    save_model,
    save_timm_backbone,
)

__all__ = [
    "BYTES_PER_MB",
    "CHECK_ATOL",
    "CHECK_FILE",
    "CHECK_SEED",
    "DATASETS",
    "DEFAULT_EXPORT_DTYPE",
    "EXPORT_DTYPES",
    "EXPORT_INPUTS_KEY",
    "KEEP_FLOAT32",
    "MAX_WEIGHTS_MB",
    "RESULTS_COPY",
    "TIMM_WEIGHTS_FILE",
    "WEIGHTS_FILE",
    "DatasetInfo",
    "ExportError",
    "backbone_card",
    "build_parser",
    "check_image",
    "check_input",
    "check_results",
    "choose_license",
    "classifier_card",
    "detect_datasets",
    "export_backbone",
    "export_classifier",
    "export_lesion",
    "find_pretrain_summary",
    "finish_folder",
    "half_state_dict",
    "infer_pretrain_dir",
    "keep_recorded_outputs",
    "load_processor",
    "main",
    "pretrain_steps_run",
    "probability_shift",
    "read_finetune_run",
    "read_json",
    "record_export_inputs",
    "recorded_export_inputs",
    "rerender_classifier_card",
    "resolve_pretrain_data",
    "save_model",
    "save_timm_backbone",
    "set_decision_rule",
    "set_two_views",
    "write_check",
]
