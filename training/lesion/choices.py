"""Give a final lesion model trained on its own (`training.lesion --final-only`, e.g. beside the cross-validation on a
lent GPU) the choices of a cross-validation run: the presence score most folds chose and the median lesion threshold
(`training.lesion.train.final_choices`), written into its config.json, and a `combined_results.json` for
`training.export` (the cross-validation's folds and pooled metrics, with the final model's entry).

    python -m training.lesion.choices --cv-run runs/lesion_cv --final-run runs/lesion_final
    python -m training.export --kind lesion --model-dir runs/lesion_final/final_model \
        --results runs/lesion_final/combined_results.json --output models/usvcl-lesion-busbra
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from training.cli_inputs import require_inputs
from training.lesion.train import final_choices
from training.pretrain.train import write_json_atomic
from usvcl_hf import LesionConfig

LOGGER = logging.getLogger(__name__)
COMBINED_RESULTS = "combined_results.json"


def read_json(path: Path) -> Any:
    """A JSON file, or a `FileNotFoundError` naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def apply_choices(cv_run: Path, final_run: Path) -> Path:
    """Write the cross-validation's choices into `final_run/final_model/config.json` and `combined_results.json`."""
    cv_results = read_json(cv_run / "results.json")
    final_results = read_json(final_run / "results.json")
    if not cv_results["folds"]:
        raise ValueError(f"{cv_run / 'results.json'} holds no cross-validated fold")
    choices = final_choices(cv_results["folds"])
    model_dir = Path(final_results["final_model"]["path"])
    if not model_dir.is_dir():
        model_dir = final_run / "final_model"
    config = LesionConfig.from_pretrained(model_dir)
    config.presence_score, config.lesion_threshold = choices["presence_score"], choices["lesion_threshold"]
    config.save_pretrained(model_dir)
    final = {**final_results["final_model"], "presence_score": choices["presence_score"],
             "lesion_threshold": choices["lesion_threshold"], "command": final_results["command"],
             "wall_time_s": final_results["wall_time_s"]}
    combined = {**cv_results, "final_model": final}
    write_json_atomic(final_run / COMBINED_RESULTS, combined)
    return final_run / COMBINED_RESULTS


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv-run", type=Path, required=True, help="training.lesion output with folds (results.json)")
    parser.add_argument("--final-run", type=Path, required=True, help="training.lesion --final-only output")
    args = parser.parse_args(argv)
    require_inputs("python -m training.lesion.choices", {"--cv-run": args.cv_run, "--final-run": args.final_run})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = apply_choices(args.cv_run, args.final_run)
    except (OSError, KeyError, ValueError) as error:
        LOGGER.error("lesion_choices failed: %s", error)
        return 1
    LOGGER.info("choices of %s written to %s/final_model/config.json and %s", args.cv_run, args.final_run, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
