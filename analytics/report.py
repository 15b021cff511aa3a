"""The capacity report: how many days until CPU or memory runs out, whether the cluster can
lose its largest node, headroom now and at the forecast horizon, imbalance over time and the
guests moved most.

`build_report` computes it once (pure: the caller reads the store and the cluster and hands in
frames); `to_markdown` and `table_rows` feed Prefect artifacts and the CLI; `to_html` writes one
standalone page with charts. No credential is ever passed in, so none can reach a report.
"""

from analytics.report_build import CapacityReport, build_report
from analytics.report_html import Figure, figures, to_html
from analytics.report_text import Section, n_plus_one_verdict, sections, table_rows, to_markdown

__all__ = [
    "CapacityReport",
    "Figure",
    "Section",
    "build_report",
    "figures",
    "n_plus_one_verdict",
    "sections",
    "table_rows",
    "to_html",
    "to_markdown",
]
