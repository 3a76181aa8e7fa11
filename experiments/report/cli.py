"""`python -m experiments.report [--check]`: rewrite the documents' tables, or check that they are up to date."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from experiments.report.documents import DEFAULT_SPEC, check, load_spec, stale_documents, write

logger = logging.getLogger("experiments.report")
DESCRIPTION = "Rebuild every results table of the documents from the committed runs."


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the tables to build (YAML)")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root the spec's paths start from")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    documents = stale_documents(load_spec(args.root / args.spec), args.root)
    if args.check:
        stale = check(documents)
        logger.info("%d of %d documents up to date", len(documents) - len(stale), len(documents))
        return 1 if stale else 0
    changed = write(documents)
    logger.info("written to %s", ", ".join(map(str, changed)) if changed else "nothing (every document up to date)")
    return 0
