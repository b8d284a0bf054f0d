"""``longtail report DIR``: figures (SVG and PDF) and one self-contained report.html for a study
folder or a single run folder, from the run store alone. See collect.py (what is read),
validate.py (what is accepted), figures.py (what is drawn), html.py (the page) and owned.py (which
files a report may replace: only those longtail wrote)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from longtail.errors import LongtailError
from longtail.report.collect import collect_report_data


def write_report(directory: str | Path, note: Callable[[str], None] | None = None,
                 metric: str = "test_balanced_acc") -> Path:
    """Write DIR/figures/*.svg|pdf and DIR/report.html; return the HTML's path. ``metric``: what a
    study's headline ranks the arms on (report.tables.HEADLINE_METRICS). ``note`` hears one
    line per thing left out (a run whose files are unusable, lines of a metrics.jsonl, a malformed
    study.json; the puzzle examples when the data or checkpoint cannot be had), one about runs still
    in progress (drawn, marked partial, left out of the statistics), and one per figure of an earlier
    report left in place because it was changed since."""
    from longtail.report.html import build_report
    from longtail.report.tables import HEADLINE_METRICS

    if metric not in HEADLINE_METRICS:
        raise LongtailError(f"metric {metric!r} is not one a headline ranks on ({', '.join(HEADLINE_METRICS)})")
    note = note or (lambda line: None)
    # A report's stderr carries its notes and nothing else: a glyph missing from the font, the mean
    # of a class no seed tested, a t-test on equal numbers warn, and none of it is the user's to act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = collect_report_data(directory, note)
        partial = data.partial_runs
        if partial:
            note(f"{len(partial)} run(s) without summary.json drawn as partial: {', '.join(r.label for r in partial)}")
        return build_report(data, note, metric)


__all__ = ["write_report", "collect_report_data"]
