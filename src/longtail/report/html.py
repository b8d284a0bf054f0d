"""report.html: one self-contained page. Figures are embedded as SVG data URIs in <img> tags (an
SVG inside <img> can neither run scripts nor fetch anything), tables are plain HTML, styles are
inline; nothing is loaded from the network and the page has no scripts. Every string that comes
from a config, a class name or a file name goes through html.escape.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from longtail.aggregate import METRICS, MINORITY_RULE, NOISE_RULE, PAIRED_METRICS
from longtail.report import figures as F
from longtail.report.collect import ReportData, RunRecord
from longtail.report.reference import SEED_NOTE
from longtail.runs import atomic_write

METRIC_NAMES = {
    "test_acc": "test acc",
    "test_balanced_acc": "balanced acc",
    "test_macro_f1": "macro-F1",
    "minority_acc": "minority acc",
    "majority_acc": "majority acc",
    "best_test_acc_over_epochs": "best test acc over epochs",
}
SETTINGS = ("recipe", "epochs", "imbalance", "rebalance", "loss", "loss_params", "padding", "init", "limit_train")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.partial { color: #a33; font-weight: bold; }
.note { font-size: 0.9em; color: #444; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _num(value: float | None, digits: int = 4) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _mean_std(stat: dict) -> str:
    if stat["mean"] is None:
        return "&ndash;"
    std = f" &plusmn; {stat['std']:.4f}" if stat["std"] is not None else ""
    return f"{stat['mean']:.4f}{std}"


def _figure(svg: bytes, stem: str, caption: str) -> str:
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    links = (f'(<a href="figures/{escape(stem)}.svg">SVG</a>, <a href="figures/{escape(stem)}.pdf">PDF</a>)')
    return (f'<figure><img src="{uri}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)} {links}</figcaption></figure>")


def results_table(data: ReportData) -> str:
    arms = data.aggregate["arms"]
    if not arms:
        return '<p class="partial">No finished runs yet: no statistics.</p>'
    head = "".join(f"<th>{escape(METRIC_NAMES[m])}</th>" for m in METRICS)
    rows = []
    for arm in data.arms:
        if arm not in arms:
            continue
        entry = arms[arm]
        cells = "".join(f"<td>{_mean_std(entry[m])}</td>" for m in METRICS)
        seed = data.seed_number(arm)
        best = entry["best_test_acc_over_epochs"]["mean"]
        diff = f"{best - seed:+.4f}" if seed is not None and best is not None else "&ndash;"
        rows.append(f"<tr><td>{escape(arm)}</td><td>{entry['n_seeds']}</td>{cells}"
                    f"<td>{_num(seed)}</td><td>{diff}</td></tr>")
    return ("<table><thead><tr><th>arm</th><th>seeds</th>" + head +
            "<th>seed report (best over epochs)</th><th>ours best &minus; seed</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def paired_table(data: ReportData) -> str:
    paired = data.aggregate["paired"]
    if not paired:
        return "<p>No paired comparison (no baseline arm with finished runs).</p>"
    rows = []
    for arm in data.arms:
        for metric in PAIRED_METRICS:
            if arm not in paired:
                continue
            p = paired[arm][metric]
            verdict = {True: "yes", False: "no", None: "undetermined"}[p["exceeds_noise"]]
            rows.append(f"<tr><td>{escape(arm)}</td><td class='text'>{escape(METRIC_NAMES[metric])}</td>"
                        f"<td>{p['n']}</td><td>{_num(p['diff_mean'])}</td><td>{_num(p['diff_std'])}</td>"
                        f"<td>{_num(p['p_value'], 3)}</td><td class='text'>{verdict}</td>"
                        f"<td class='text'>{escape(p['rule'] or '')}</td></tr>")
    return ("<table><thead><tr><th>arm</th><th>metric</th><th>paired seeds</th><th>mean diff</th><th>std of diff</th>"
            "<th>p</th><th>exceeds seed noise?</th><th>rule</th></tr></thead><tbody>" + "".join(rows) +
            "</tbody></table>")


def _status(run: RunRecord) -> str:
    if run.partial:
        return f'<span class="partial">partial: {len(run.metrics)} of {escape(str(run.config.get("epochs", "?")))} epochs</span>'
    return "finished"


def runs_table(data: ReportData) -> str:
    rows = []
    for run in data.runs + data.pretrain:
        settings = ", ".join(f"{k}={run.config[k]}" for k in SETTINGS if run.config.get(k) not in (None, "", {}, []))
        acc = _num(run.summary.get("test_acc")) if run.summary else "&ndash;"
        folder = run.path.relative_to(data.root) if run.path != data.root else Path(".")
        rows.append(f"<tr><td>{escape(run.arm)}</td><td>{escape(str(run.seed))}</td><td class='text'>{_status(run)}</td>"
                    f"<td>{acc}</td><td class='text'>{escape(settings)}</td>"
                    f"<td class='text'><code>{escape(str(folder))}</code></td></tr>")
    return ("<table><thead><tr><th>arm</th><th>seed</th><th>status</th><th>test acc</th><th>settings</th>"
            "<th>folder</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _draw_all(data: ReportData, folder: Path) -> list[tuple[str, str]]:
    """(section heading, figure HTML) for every figure, saved under ``folder``."""
    out = []

    def add(heading: str, fig, stem: str, caption: str) -> None:
        out.append((heading, _figure(F.save_figure(fig, folder, stem), stem, caption)))

    finished = bool(data.aggregate["arms"])
    if finished:
        add("Results", F.results_figure(data), "results",
            "Test accuracy per arm, mean and standard deviation over seeds; diamonds: the seed report.")
    if data.runs:
        add("Validation curves", F.curves_figure(data, "val_loss", "validation loss (cross-entropy)"), "val-loss",
            f"Validation loss for all arms, raw and smoothed ({F.SMOOTHING_TEXT}).")
        add("Validation curves", F.curves_figure(data, "val_acc", "validation accuracy"), "val-acc",
            f"Validation accuracy for all arms, raw and smoothed ({F.SMOOTHING_TEXT}).")
    for i, arm in enumerate(data.arms):
        add("Each arm", F.arm_figure(data, arm), f"arm-{i:02d}-{F.safe_stem(arm)}",
            f"Arm {arm}: training and validation loss, validation and test accuracy per epoch.")
    if finished and data.classes:
        add("Per-class accuracy", F.per_class_figure(data), "per-class-acc",
            "Test accuracy of each class, mean over seeds (error bars: standard deviation).")
        add("Confusion matrices", F.confusion_figure(data), "confusion",
            "Test confusion matrices, summed over seeds, each row divided by its class's count.")
    if data.pretrain:
        add("Jigsaw pretraining", F.pretext_figure(data), "pretext",
            "Pretext task on the validation split per epoch: loss, tiles placed, puzzles solved, confidence.")
    return out


def build_report(data: ReportData) -> Path:
    figures_dir = data.root / "figures"
    drawn = _draw_all(data, figures_dir)
    parts = [f"<h1>{escape(data.title)}</h1>",
             f"<p class='note'>{'Study' if data.kind == 'study' else 'Run'} folder <code>{escape(str(data.root))}</code>: "
             f"{len(data.runs)} run(s) in {len(data.arms)} arm(s).</p>"]
    partial = data.partial_runs
    if partial:
        names = ", ".join(escape(r.label) for r in partial)
        parts.append(f"<p class='partial'>{len(partial)} partial run(s) (no summary.json yet), drawn dashed and left "
                     f"out of every statistic: {names}.</p>")
    if data.runs:
        parts += ["<h2>Results</h2>", results_table(data), f"<p class='note'>{escape(SEED_NOTE)} Test acc is measured "
                  "at the epoch chosen on our held-out validation split. &plusmn;: sample standard deviation over "
                  f"seeds. {escape(MINORITY_RULE)}.</p>"]
    if data.kind == "study" and data.runs:
        baseline = escape(data.baseline) if data.baseline else "none"
        parts += [f"<h2>Paired comparison with the baseline arm ({baseline})</h2>", paired_table(data),
                  f"<p class='note'>Difference arm &minus; baseline per seed. Noise rule: {escape(NOISE_RULE)}.</p>"]
    heading = None
    for section, html in drawn:
        if section != heading:
            parts.append(f"<h2>{escape(section)}</h2>")
            heading = section
        parts.append(html)
    parts += ["<h2>Runs</h2>", runs_table(data)]
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(data.title)} - longtail report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    path = data.root / "report.html"
    encoded = page.encode("utf-8")
    atomic_write(path, lambda f: f.write(encoded))
    return path
