"""The documents' tables: build every table of the spec, put each between its markers, find the stale ones."""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from experiments import lesion_report
from experiments.report.device_kinds import DEVICE_TABLE_KINDS
from experiments.report.ensemble_tables import calibration_table, ensembles_table
from experiments.report.label_efficiency import label_efficiency_table
from experiments.report.runs import load_arms
from experiments.report.statistics import Statistics
from experiments.report.tables import arms_table, choice_table, fold_auc_table, metrics_table, paired_table

logger = logging.getLogger("experiments.report")
DEFAULT_SPEC = Path("experiments/report.yaml")
BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.DOTALL)


TABLE_KINDS = {"metrics": metrics_table, "fold_auc": fold_auc_table, "paired": paired_table, "arms": arms_table,
               "choice": choice_table, "ensembles": ensembles_table, "calibration": calibration_table}
# kinds built from run folders named in the table itself, not from arms: (table spec, repository root) -> Markdown
RUN_TABLE_KINDS = {"label_efficiency": label_efficiency_table, "lesion": lesion_report.lesion_table,
                   **DEVICE_TABLE_KINDS}


# ------------------------------------------------------------------------------------------------------------ steps
def load_spec(path: Path) -> dict[str, Any]:
    """The report's YAML spec, checked for the keys every step needs."""
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("arms", "tables"):
        if key not in spec:
            raise ValueError(f"{path}: the spec needs a {key!r} section")
    for name, table in spec["tables"].items():
        if table.get("kind") not in (*TABLE_KINDS, *RUN_TABLE_KINDS):
            raise ValueError(f"{path}: table {name!r} has kind {table.get('kind')!r}; allowed: "
                             f"{[*TABLE_KINDS, *RUN_TABLE_KINDS]}")
    return spec


def build_tables(spec: dict[str, Any], root: Path) -> dict[str, dict[str, str]]:
    """`{document: {table name: Markdown}}` for every table of the spec."""
    stats = Statistics(load_arms(spec, root))
    documents: dict[str, dict[str, str]] = {}
    for name, table in spec["tables"].items():
        if table["kind"] in RUN_TABLE_KINDS:
            text = RUN_TABLE_KINDS[table["kind"]](table, root)
        else:
            text = TABLE_KINDS[table["kind"]](table, stats)
        documents.setdefault(table["document"], {})[name] = text
        logger.info("table %s (%s) built", name, table["document"])
    return documents


def render_document(text: str, tables: dict[str, str], path: Path) -> str:
    """`text` with each `<!-- report:NAME -->` block's body replaced by table NAME; every block and table must pair."""
    seen = set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            raise ValueError(f"{path}: block {name!r} has no table in the spec (remove the block or declare it)")
        seen.add(name)
        return match.group(1) + tables[name] + match.group(4)

    rendered = BLOCK.sub(replace, text)
    missing = sorted(set(tables) - seen)
    if missing:
        raise ValueError(f"{path}: no marker for tables {missing} (add <!-- report:NAME --> ... <!-- /report -->)")
    return rendered


def stale_documents(spec: dict[str, Any], root: Path) -> dict[Path, tuple[str, str]]:
    """`{path: (committed text, regenerated text)}` for every document of the spec."""
    documents = {}
    for document, tables in build_tables(spec, root).items():
        path = root / document
        text = path.read_text()
        documents[path] = (text, render_document(text, tables, path))
    return documents


def check(documents: dict[Path, tuple[str, str]]) -> list[Path]:
    """Log a diff of every stale document; return their paths."""
    stale = []
    for path, (old, new) in documents.items():
        if old != new:
            stale.append(path)
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(path), "regenerated", lineterm="")
            logger.warning("%s differs from its data:\n%s", path, "\n".join(list(diff)[:60]))
    return stale


def write(documents: dict[Path, tuple[str, str]]) -> list[Path]:
    """Write the regenerated documents that changed; return their paths."""
    changed = [path for path, (old, new) in documents.items() if old != new]
    for path in changed:
        path.write_text(documents[path][1])
    return changed
