"""``longtail report DIR``: figures (SVG and PDF) and one self-contained report.html for a study
folder or a single run folder, from the run store alone. See collect.py (what is read),
figures.py (what is drawn) and html.py (the page)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from longtail.report.collect import collect_report_data


def write_report(directory: str | Path, note: Callable[[str], None] | None = None) -> Path:
    """Write DIR/figures/*.svg|pdf and DIR/report.html; return the HTML's path. ``note`` hears
    one line about runs still in progress (drawn, marked partial, left out of the statistics) and
    one about a figure left out (the puzzle examples, when the data or checkpoint cannot be had)."""
    from longtail.report.html import build_report

    data = collect_report_data(directory)
    partial = data.partial_runs
    if partial and note is not None:
        note(f"{len(partial)} run(s) without summary.json drawn as partial: {', '.join(r.label for r in partial)}")
    return build_report(data, note or (lambda line: None))


__all__ = ["write_report", "collect_report_data"]
