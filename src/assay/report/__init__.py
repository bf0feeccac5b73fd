"""The evaluation report: figures, baselines, speed and cost, rendered as JSON, Markdown and HTML."""

from ._baselines import baseline_text, run_baselines
from ._compare import compare_versions
from ._evaluate import evaluate
from ._metrics import (
    agreement_kappa,
    auroc,
    average_precision,
    bootstrap_ci,
    classification_metrics,
    cohen_kappa,
    expected_calibration_error,
    kappa_of_confusion,
    reliability_bins,
    verdict_metrics,
)
from ._render import FILES, baseline_warnings, render_html, render_markdown, summary_line, write_report
from ._schema import REPORT_FORMAT_VERSION, Candidate, Figures, Report, Selection, Speed
from ._speed import machine_info, measure_speed

__all__ = [
    "Candidate",
    "FILES",
    "Figures",
    "REPORT_FORMAT_VERSION",
    "Report",
    "Selection",
    "Speed",
    "agreement_kappa",
    "auroc",
    "average_precision",
    "baseline_text",
    "baseline_warnings",
    "bootstrap_ci",
    "classification_metrics",
    "cohen_kappa",
    "compare_versions",
    "evaluate",
    "expected_calibration_error",
    "kappa_of_confusion",
    "machine_info",
    "measure_speed",
    "reliability_bins",
    "render_html",
    "render_markdown",
    "run_baselines",
    "verdict_metrics",
    "summary_line",
    "write_report",
]
