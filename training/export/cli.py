"""`python -m training.export`: options, then one of the exports; the last line says where the folder went."""

from __future__ import annotations

import argparse
import logging
import platform
from pathlib import Path

import torch
import transformers

import usvcl_hf
from training.cli_inputs import require_inputs
from training.export.base import ExportError
from training.export.exports import export_backbone, export_classifier, rerender_classifier_card
from training.export.lesion import export_lesion
from training.export.licences import DATASETS
from training.export.weights import DEFAULT_EXPORT_DTYPE, EXPORT_DTYPES, MAX_WEIGHTS_MB
from training.logs import setup_logging

LOGGER = logging.getLogger(__name__)
KINDS = ("classifier", "backbone", "lesion")
PROG = "python -m training.export"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a trained usvcl model as a Hub-ready folder (half-precision weights that load as float32, "
        "code, processor, model card, plots, export_check.json).",
    )
    parser.add_argument("--kind", choices=KINDS, default="classifier", help="what to export (default: classifier)")
    parser.add_argument("--model-dir", type=Path, help="classifier: FINETUNE_OUTPUT/final_model; backbone: a "
                        "UsvclForContrastivePretraining folder (default PRETRAIN_DIR/model)")
    parser.add_argument("--results", type=Path, help="classifier: FINETUNE_OUTPUT/results.json")
    parser.add_argument("--pretrain-dir", type=Path, help="pretraining output folder (its results.json names the data)")
    parser.add_argument("--pretrain-data", nargs="+", choices=sorted(DATASETS),
                        help="data sets contrastive pretraining used (overrides what --pretrain-dir says)")
    parser.add_argument("--output", type=Path, required=True,
                        help="folder to write, e.g. models/usvcl-lite0-busbra")
    parser.add_argument("--dtype", choices=sorted(EXPORT_DTYPES), default=DEFAULT_EXPORT_DTYPE,
                        help="precision of the stored weights (they load as float32)")
    parser.add_argument("--max-size-mb", type=float, default=MAX_WEIGHTS_MB, help="largest allowed weights file")
    parser.add_argument("--license", dest="license_id", help="override the Hub licence id chosen from the data")
    parser.add_argument("--code-url", help="classifier: link to the usvcl code, shown in the card")
    parser.add_argument("--label-efficiency", type=Path,
                        help="classifier: a label-efficiency plot (PNG) from another run to show in the card")
    parser.add_argument("--repo-id", help="Hub id (ORG/NAME) the card's examples use; default: the folder name")
    parser.add_argument("--card-only", action="store_true",
                        help="classifier: only write README.md of the already exported --output again (no weights)")
    return parser


def run_classifier(args: argparse.Namespace) -> Path:
    """`--kind classifier`: export, or with `--card-only` write the card of an exported folder again."""
    if args.card_only:
        if args.results is None:
            raise ExportError("--card-only needs --results.")
        output = rerender_classifier_card(args.output, args.results, args.pretrain_dir, args.pretrain_data,
                                          args.license_id, args.code_url, args.repo_id)
        LOGGER.info("Wrote the card of %s again (weights untouched): %s", output.resolve(), output / "README.md")
        return output
    if args.model_dir is None or args.results is None:
        raise ExportError("--kind classifier needs --model-dir and --results.")
    return export_classifier(args.model_dir, args.results, args.output, args.pretrain_dir, args.pretrain_data,
                             args.dtype, args.max_size_mb, args.license_id, args.code_url, args.repo_id,
                             args.label_efficiency)


def run_backbone(args: argparse.Namespace) -> Path:
    """`--kind backbone`: the encoder of a pretraining output."""
    model_dir = args.model_dir or (args.pretrain_dir / "model" if args.pretrain_dir else None)
    if model_dir is None:
        raise ExportError("--kind backbone needs --pretrain-dir (or --model-dir).")
    return export_backbone(model_dir, args.output, args.pretrain_dir, args.pretrain_data, args.dtype,
                           args.max_size_mb, args.license_id, args.repo_id)


def run_lesion(args: argparse.Namespace) -> Path:
    """`--kind lesion`: the lesion segmenter of `training.lesion.train`."""
    if args.model_dir is None or args.results is None:
        raise ExportError("--kind lesion needs --model-dir (RUN/final_model) and --results (RUN/results.json).")
    return export_lesion(args.model_dir, args.results, args.output, args.dtype, args.max_size_mb, args.license_id,
                         args.repo_id)


def main(argv: list[str] | None = None) -> int:
    """Run the export; log where the folder went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    require_inputs(PROG, {"--model-dir": args.model_dir, "--results": args.results, "--pretrain-dir": args.pretrain_dir,
                          "--label-efficiency": args.label_efficiency})
    if args.kind == "backbone" and args.model_dir is None and args.pretrain_dir is not None:
        require_inputs(PROG, {"--pretrain-dir (its model/)": args.pretrain_dir / "model"})
    setup_logging()
    usvcl_hf.register_auto_classes()
    try:
        output = {"classifier": run_classifier, "backbone": run_backbone, "lesion": run_lesion}[args.kind](args)
    except ExportError as error:
        LOGGER.error("export failed: %s", error)
        return 1
    if not args.card_only:
        LOGGER.info("python %s, torch %s, transformers %s", platform.python_version(), torch.__version__,
                    transformers.__version__)
        LOGGER.info("Exported the %s to %s", args.kind, output.resolve())
    return 0


__all__ = ["build_parser", "main"]
