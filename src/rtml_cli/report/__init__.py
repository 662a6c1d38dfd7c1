"""`rtml report`: one migration report from rtml's own outputs, as HTML or Markdown.

``load_inputs(paths)`` reads and checks the inputs (JSON documents, RESULTS, precompute
runs, directories), ``build_report(inputs, options)`` turns them into a
:class:`~rtml_cli.report.model.Report` (the verdict, then one section per question), and
``write_report(report, out, fmt)`` renders it through the Jinja2 templates and writes it
atomically.
"""

from rtml_cli.report.build import build_report
from rtml_cli.report.context import Options
from rtml_cli.report.inputs import Inputs, load_inputs
from rtml_cli.report.model import Claim, Num, Report
from rtml_cli.report.render import check_targets, render_html, render_markdown, write_report

__all__ = [
    "Claim",
    "Inputs",
    "Num",
    "Options",
    "Report",
    "build_report",
    "check_targets",
    "load_inputs",
    "render_html",
    "render_markdown",
    "write_report",
]
