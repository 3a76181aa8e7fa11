"""How numbers are written in the report's tables."""

from __future__ import annotations

from training import evaluation

DIGITS = 3


def interval(value: float, low: float, high: float, signed: bool = False) -> str:
    """`0.812 [0.790, 0.836]` (or signed `+0.012 [-0.004, +0.028]`)."""
    form = f"{{:+.{DIGITS}f}}" if signed else f"{{:.{DIGITS}f}}"
    return f"{form.format(value)} [{form.format(low)}, {form.format(high)}]"


def metric_text(metric: dict[str, float]) -> str:
    """`value [low, high]` of a metrics_with_ci entry."""
    return interval(metric["value"], metric["ci_low"], metric["ci_high"])


def mean_sd(values: list[float]) -> str:
    """`mean ± sd` (ddof 1; one value: the value alone)."""
    spread = evaluation.seed_spread(values)
    if spread["n"] < 2:
        return f"{spread['mean']:.{DIGITS}f}"
    return f"{spread['mean']:.{DIGITS}f} ± {spread['sd']:.{DIGITS}f}"


def verdict(low: float, high: float) -> str:
    """What a paired CI of A - B supports."""
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no measurable difference"


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    return evaluation.markdown_table(headers, rows)
