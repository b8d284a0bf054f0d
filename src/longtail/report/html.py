"""report.html: one self-contained page. A study holding the seed report's arms follows its order
(Homework 02, then 03), then what it did not have; any other study opens with a headline (which arm
won, by how much, and whether that exceeds the seed-to-seed noise). Homework 03 appears for a study
with pretraining runs or arms from a jigsaw checkpoint. Figures are embedded as SVG data URIs in <img> tags (an SVG inside
<img> can neither run scripts nor fetch anything), tables are plain HTML, styles are inline, and a
Content-Security-Policy forbids scripts and every fetch but data: images; the page works from disk
with no network. Every string from a config, a class name or a file name goes through html.escape.
The page and its figures are drawn in memory and written together through owned.py, which replaces
only files an earlier report wrote and refuses, before writing anything, to overwrite a user's.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from html import escape
from pathlib import Path

from longtail.aggregate import MINORITY_RULE, NOISE_RULE
from longtail.errors import LongtailError
from longtail.report import figures as F
from longtail.report import tables as T
from longtail.report.collect import ReportData, init_pairs, padding_pairs
from longtail.report.reference import SEED_FIGURE_ARMS, SEED_NOTE
from longtail.report.owned import FIGURES, PAGE, ReportFiles, sha256, sha256_of

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
thead th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.partial { color: #a33; font-weight: bold; }
.note { font-size: 0.9em; color: #444; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


class Figures:
    """Renders each figure as SVG and PDF, queues both for figures/ and returns its <figure>
    element; nothing is written until the page is complete (owned.ReportFiles.commit)."""

    def __init__(self, files: ReportFiles):
        self.files = files

    def html(self, fig, stem: str, caption: str) -> str:
        rendered = F.render_figure(fig)
        for fmt, content in rendered.items():
            self.files.add(f"{FIGURES}/{stem}.{fmt}", content)
        uri = "data:image/svg+xml;base64," + base64.b64encode(rendered["svg"]).decode("ascii")
        links = f'(<a href="figures/{escape(stem)}.svg">SVG</a>, <a href="figures/{escape(stem)}.pdf">PDF</a>)'
        return (f'<figure><img src="{uri}" alt="{escape(caption)}">'
                f"<figcaption>{escape(caption)} {links}</figcaption></figure>")


# Every page starts with PAGE_HEAD and ends with PAGE_TAIL; a report.html an earlier longtail wrote
# (before owned.py kept a record) is recognised by them.
PAGE_HEAD = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
             f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>")
TITLE_END = " - longtail report</title>"
PAGE_TAIL = "\n</body></html>\n"
EMBEDDED = re.compile(rb'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')
LINKED = re.compile(rb'<a href="figures/([A-Za-z0-9_-][A-Za-z0-9._-]*)\.svg">')


def legacy_outputs(root: Path) -> dict[str, set[str]]:
    """The files of a report folder with no record that an earlier longtail provably wrote: a
    report.html with longtail's page head and tail; each SVG it links whose bytes are one of the
    images embedded in it; and the PDF beside such an SVG when the page links it and matplotlib
    produced it. Anything else is taken to be the user's."""
    page = root / PAGE
    digest = sha256_of(page)
    if digest is None:
        return {}
    content = page.read_bytes()
    head = PAGE_HEAD.encode()
    if not (content.startswith(head) and content.endswith(PAGE_TAIL.encode())
            and TITLE_END.encode() in content[len(head):content.find(b"</title>") + len(b"</title>")]):
        return {}
    found = {PAGE: {digest}}
    embedded = {sha256(svg) for m in EMBEDDED.findall(content) if (svg := _b64(m)) is not None}
    for stem in {m.decode() for m in LINKED.findall(content)}:
        svg_hash = sha256_of(root / FIGURES / f"{stem}.svg")
        if svg_hash in embedded:
            found[f"{FIGURES}/{stem}.svg"] = {svg_hash}
            pdf = root / FIGURES / f"{stem}.pdf"
            pdf_hash = sha256_of(pdf)
            if pdf_hash and f'href="figures/{stem}.pdf"'.encode() in content and _matplotlib_pdf(pdf):
                found[f"{FIGURES}/{stem}.pdf"] = {pdf_hash}
    return found


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error: a page edited by hand
        return None


def _matplotlib_pdf(path: Path) -> bool:
    try:
        content = path.read_bytes()
    except OSError:
        return False
    return content.startswith(b"%PDF") and b"/Producer (Matplotlib pdf backend" in content


def _arm_stem(data: ReportData, arm: str) -> str:
    return f"arm-{data.arms.index(arm):02d}-{F.safe_stem(arm)}"


def _arm_figure(data: ReportData, figs: Figures, arm: str) -> str:
    return figs.html(F.arm_figure(data, arm), _arm_stem(data, arm),
                     f"Arm {arm}: training and validation loss, validation and test accuracy per epoch, one line per seed.")


def header(data: ReportData) -> list[str]:
    what = "Study" if data.kind == "study" else "Run"
    parts = [f"<h1>{escape(data.title)}</h1>",
             f"<p class='note'>{what} folder <code>{escape(str(data.root))}</code>: {len(data.runs)} classifier "
             f"run(s) in {len(data.arms)} arm(s), {len(data.pretrain)} pretraining run(s).</p>"]
    ds = data.dataset
    if ds:
        fingerprint = str(ds.get("fingerprint") or "")[:16] or "unknown"
        given = f", given as <code>{escape(str(ds['source']))}</code>" if ds.get("source") else ""
        parts.append(f"<p class='note' id='dataset'>Data: {escape(str(ds.get('name') or ds.get('source')))} "
                     f"(fingerprint {escape(fingerprint)}){given}.</p>")
    partial = data.partial_runs
    if partial:
        names = ", ".join(escape(r.label) for r in partial)
        parts.append(f"<p class='partial'>{len(partial)} partial run(s) (no summary.json: still running or "
                     f"interrupted), drawn dashed and left out of every statistic: {names}.</p>")
    return parts


def _spread(data: ReportData, arms: list[str], shape: str) -> str:
    """"; <shape> one standard deviation over seeds" for a caption, where one of ``arms`` has two or
    more finished seeds (else nothing is drawn for it and the caption says nothing)."""
    return f"; {shape} one standard deviation over seeds" if any(len(data.finished(a)) > 1 for a in arms) else ""


def _value_axis(fig) -> str:
    bottom = fig.axes[0].get_ylim()[0]
    return f" The value axis starts at {bottom:.2f}, not at 0." if bottom > 0 else ""


def results_section(data: ReportData, figs: Figures, metric: str) -> list[str]:
    seeded = data.has_seed_numbers
    seed_note = f"{escape(SEED_NOTE)} " if seeded else ""
    parts = ["<h2>Results</h2>", T.results_table(data),
             f"<p class='note'>{seed_note}Test figures are measured at the epoch chosen on our held-out validation "
             f"split. &plusmn;: sample standard deviation over seeds. {escape(MINORITY_RULE)}.</p>"]
    if data.aggregate["arms"]:
        series = [("test_acc", "test acc (epoch chosen on validation)")]
        series += [(metric, T.METRIC_NAMES[metric])] if metric != "test_acc" else []
        series += [("best_test_acc_over_epochs", "best test acc over epochs")] if seeded else []
        fig = F.results_figure(data, series)
        diamonds = "; diamonds: the seed report's best accuracy over epochs" if seeded else ""
        caption = (f"Per arm, the mean over seeds of {', '.join(name for _, name in series)}"
                   f"{_spread(data, list(data.aggregate['arms']), 'error bars:')}{diamonds}.{_value_axis(fig)}")
        parts.append(figs.html(fig, "results", caption))
    return parts


def curves_part(data: ReportData, figs: Figures, seeded: bool) -> list[str]:
    """Validation loss and accuracy of all arms per epoch, raw and smoothed (the seed's figures 3 and 4)."""
    spread = _spread(data, data.arms, "shaded (an error bar where there is one epoch):")
    heading = " (Homework 02, figures 3 and 4)" if seeded else ""
    parts = [f"<h3>Validation loss and accuracy of all arms, raw and smoothed{heading}</h3>",
             f"<p class='note'>Smoothing: {escape(F.SMOOTHING_TEXT)}. Validation loss is plain cross-entropy "
             "whatever loss an arm trains with.</p>"]
    for n, key, name in ((3, "val_loss", "validation loss"), (4, "val_acc", "validation accuracy")):
        label = "validation loss (cross-entropy)" if key == "val_loss" else name
        parts.append(figs.html(F.curves_figure(data, key, label), key.replace("_", "-"),
                               f"{f'Figure {n}: ' if seeded else ''}{name.capitalize()} of all arms, raw (left) and "
                               f"smoothed (right), mean over seeds{spread}; smoothing: {F.SMOOTHING_TEXT}."))
    return parts


def padding_part(data: ReportData, seeded: bool) -> list[str]:
    pairs = padding_pairs(data)
    if not pairs:
        return []
    heading = " (Homework 02, section 1)" if seeded else ""
    return [f"<h3>Padding: 'same' vs 'valid'{heading}</h3>", *(T.padding_sentence(data, s, v) for s, v in pairs)]


def homework02_section(data: ReportData, figs: Figures, shown: set[str]) -> list[str]:
    """The seed's figures 1 and 2, its table 2, figures 3 and 4, and its padding remark."""
    parts = ["<h2>Homework 02: the imbalance study</h2>"]
    for label, names in SEED_FIGURE_ARMS.items():
        arm = data.first_arm(names)
        if arm is not None:
            parts += [f"<h3>Homework 02, {escape(label)} (arm {escape(arm)})</h3>", _arm_figure(data, figs, arm)]
            shown.add(arm)
    parts += ["<h3>Best accuracy per arm (Homework 02, table 2)</h3>", T.seed_table(data)]
    return parts + curves_part(data, figs, True) + padding_part(data, True)


def longtail_section(data: ReportData, figs: Figures) -> list[str]:
    """ECE and accuracy by class size per arm, the reliability diagrams and per-class accuracy against
    the class's training images; each part only where the runs recorded what it needs."""
    arms = [a for a in data.arms if data.finished(a)]
    parts = []
    table = T.longtail_table(data)
    if table:
        parts.append(table)
    binned = [a for a in arms if F.pooled_calibration_bins(data.finished(a)) is not None]
    if binned:
        parts.append(figs.html(F.reliability_figure(data, binned), "reliability",
                               "Reliability diagrams of the test set, one per arm: bars, the accuracy of the "
                               "predictions in each confidence bin (the bins of all seeds added); dots, that accuracy "
                               "at the bin's mean confidence; dashed, the diagonal of perfect calibration; in the "
                               "title, the ECE of the added bins."))
    missing = [a for a in arms if a not in binned]
    if binned and missing:
        parts.append(f"<p class='note'>No calibration bins in the summary.json of arm(s) {escape(', '.join(missing))} "
                     "(runs from before longtail recorded them): no reliability diagram.</p>")
    sized = [a for a in arms if any(r.summary.get("kept_class_counts") for r in data.finished(a))]
    if sized:
        parts.append(figs.html(F.class_size_figure(data, sized), "accuracy-by-class-size",
                               "Test accuracy of each class (mean over seeds) against the class's kept training "
                               "images (log x axis), one line per arm through its classes in order of size."))
    return ["<h2>Calibration and accuracy by class size</h2>", *parts] if parts else []


def _puzzle_part(data: ReportData, figs: Figures, note: Callable[[str], None]) -> str:
    from longtail.report.puzzles import pretraining_run, puzzle_figure, solve_examples

    run = pretraining_run(data.jigsaw_pretrain)
    if run is None:
        return "<p class='note'>No pretraining run with a checkpoint.pt: no puzzles to show.</p>"
    try:
        examples = solve_examples(run)
    except LongtailError as e:
        note(f"puzzle examples skipped: {e}")
        return f"<p class='note' id='puzzles-skipped'>Puzzle examples skipped: {escape(str(e))}.</p>"
    partial = " (partial run: its latest checkpoint)" if run.partial else ""
    return figs.html(puzzle_figure(examples), "puzzles",
                     f"Figure 1: {len(examples.labels)} test images of {run.label}{partial}, their shuffled tiles, "
                     f"and the order the net restores by row argmax (two tiles may claim one position; an empty "
                     f"position is grey) and by Hungarian decoding; red frames: a tile in the wrong place.")


def homework03_section(data: ReportData, figs: Figures, note: Callable[[str], None]) -> list[str]:
    """The seed's figure 1 (puzzles), figure 3 (pretext curves), figure 4 (with and without
    pretraining) and table 2 (the layer map)."""
    pairs = init_pairs(data)
    has_map = any("transfer" in r.summary for r in data.runs if not r.partial)
    if not (data.jigsaw_pretrain or pairs or has_map):
        return []
    parts = ["<h2>Homework 03: jigsaw pretraining and transfer</h2>"]
    if data.jigsaw_pretrain:
        parts += ["<h3>Puzzles solved by the pretrained net (Homework 03, figure 1)</h3>", _puzzle_part(data, figs, note),
                  "<h3>The pretext task per epoch (Homework 03, figure 3)</h3>",
                  figs.html(F.pretext_figure(data), "pretext",
                            "Figure 3: the pretext task on the validation split per epoch: loss, tiles placed, "
                            "puzzles solved (by argmax and Hungarian decoding), confidence; dotted: the seed report."),
                  T.pretext_table(data),
                  "<p class='note'>The seed decoded by row argmax and quoted the best value over 10 epochs on "
                  "CIFAR-10's test set; ours are on the held-out validation split, and on the test set at the "
                  "epoch with the best Hungarian whole-puzzle accuracy on validation.</p>"]
    if pairs:
        parts += ["<h3>The classifier with and without jigsaw initialisation (Homework 03, figure 4)</h3>",
                  figs.html(F.init_figure(data, pairs), "init-curves",
                            "Figure 4: validation loss and accuracy per epoch from random and from jigsaw "
                            f"initialisation, mean over seeds"
                            f"{_spread(data, [a for pair in pairs for a in pair], 'shaded:')}."),
                  T.init_table(data, pairs),
                  f"<p class='note'>Paired over seeds; noise rule: {escape(NOISE_RULE)}. The seed report's "
                  "figures are its best accuracy over 20 epochs.</p>"]
    if has_map:
        parts += ["<h3>Layer map used for transfer (Homework 03, table 2)</h3>", T.layer_map_tables(data)]
    return parts


def details_section(data: ReportData, figs: Figures, shown: set[str]) -> list[str]:
    parts = []
    if data.aggregate["arms"] and data.classes:
        fig = F.per_class_figure(data)
        parts += ["<h2>Per-class accuracy</h2>", T.per_class_table(data),
                  figs.html(fig, "per-class-acc", f"Test accuracy of each class, mean over seeds"
                            f"{_spread(data, data.arms, 'error bars:')}.{_value_axis(fig)}"),
                  "<h2>Confusion matrices</h2>",
                  figs.html(F.confusion_figure(data), "confusion",
                            "Test confusion matrices, summed over seeds, each row divided by its class's count.")]
    others = [arm for arm in data.arms if arm not in shown]
    if others:
        parts.append("<h2>Each arm</h2>")
        parts += [_arm_figure(data, figs, arm) for arm in others]
    return parts


def build_report(data: ReportData, note: Callable[[str], None], metric: str = "test_balanced_acc") -> Path:
    """Draw everything, then write report.html and figures/ (owned.py: only over files longtail
    wrote); LongtailError before any write when one of them is the user's. ``metric``: what the
    headline ranks the arms on (tables.HEADLINE_METRICS)."""
    files = ReportFiles(data.root, legacy_outputs)  # refuses a folder it cannot write into before drawing
    figs = Figures(files)
    shown: set[str] = set()
    seeded = data.seed_study
    parts = header(data)
    if data.runs and not seeded:
        parts.append(T.headline(data, metric))
    if data.runs:
        parts += results_section(data, figs, metric)
        parts += homework02_section(data, figs, shown) if seeded else []
    if data.kind == "study" and data.runs:
        bases = sorted(set(data.aggregate.get("baselines", {}).values()))
        baseline = ", ".join(escape(b) for b in bases) if bases else "none"
        parts += [f"<h2>Paired comparison with the baseline arm{'s' if len(bases) > 1 else ''} ({baseline})</h2>",
                  T.paired_table(data),
                  f"<p class='note'>Difference arm &minus; baseline per seed. Noise rule: {escape(NOISE_RULE)}.</p>"]
    parts += homework03_section(data, figs, note)
    if data.runs:
        parts += longtail_section(data, figs)
        parts += [] if seeded else ["<h2>Per epoch</h2>", *curves_part(data, figs, False), *padding_part(data, False)]
    parts += details_section(data, figs, shown)
    parts += ["<h2>Runs</h2>", T.runs_table(data)]
    page = (f"{PAGE_HEAD}{escape(data.title)}{TITLE_END}<style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + PAGE_TAIL)
    # "replace": a folder name that is not valid UTF-8 is shown with U+FFFD rather than stopping the page
    files.add(PAGE, page.encode("utf-8", "replace"))
    files.commit(note)
    return data.root / PAGE
