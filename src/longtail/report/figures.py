"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend) and
saved as SVG and PDF. Every function takes a :class:`ReportData` and returns a Figure.

Smoothed curves are exponential moving averages, s_t = 0.6 s_(t-1) + 0.4 x_t with s_1 = x_1
(TensorBoard's smoothing at weight 0.6). Curves of an arm are the mean over its finished seeds,
with a band of +- one standard deviation (an error bar where there is one epoch); partial runs are
drawn dashed, one line each. Bar charts start their value axis near the data, not at 0.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from longtail.report.collect import ReportData, RunRecord
from longtail.report.reference import SEED_PRETEXT, SEED_PRETEXT_EPOCHS
from longtail.report.validate import shown

SMOOTHING = 0.6
# An EMA with weight w has its centre of mass w / (1 - w) = 1.5 epochs back, as a trailing moving
# average over (1 + w) / (1 - w) = 4 epochs does: that is the window the report states.
SMOOTHING_WINDOW = round((1 + SMOOTHING) / (1 - SMOOTHING))
SMOOTHING_TEXT = (f"exponential moving average s_t = {SMOOTHING} s_(t-1) + {1 - SMOOTHING:.1f} x_t, s_1 = x_1 "
                  f"(TensorBoard's smoothing {SMOOTHING}; its centre of mass matches a trailing "
                  f"{SMOOTHING_WINDOW}-epoch moving average)")
COLORS = matplotlib.colormaps["tab10"].colors
SIZE_TICKS = 12  # class sizes labelled one by one up to this many
TICK_LABELS = 40  # class names on an axis beyond this overlap: every n-th class index instead
MAX_WIDTH = 40.0  # inches


def literal(text: object, limit: int = 60) -> str:
    """Text for matplotlib from data: a '$' must not start mathtext, a name that is not valid UTF-8
    must not stop the SVG writer, and a name of a megabyte must not become a figure of a mile."""
    s = shown(text)
    return (s if len(s) <= limit else s[:limit - 1] + "\u2026").replace("$", r"\$")


def ema(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else weight * out[-1] + (1 - weight) * v)
    return out


def _series(run: RunRecord, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``; collect.py has left only finite numbers in the rows."""
    rows = [r for r in run.metrics if isinstance(r.get(key), float)]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def _mean_curve(runs: list[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over ``runs`` at the epochs every run has the value for (seeds of one arm
    normally share them; a row missing in one seed must not shift the others)."""
    series = [dict(zip(*_series(r, key))) for r in runs]
    series = [s for s in series if s]
    if not series:
        return None
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    if not epochs:
        return None
    values = np.array([[s[e] for e in epochs] for s in series])
    return np.array(epochs), values.mean(axis=0), values.std(axis=0, ddof=1) if len(series) > 1 else None


def _color(data: ReportData, arm: str):
    # tab10 while it lasts, tab20 (pairs of shades) so up to 20 arms keep distinct colours
    palette = COLORS if len(data.arms) <= len(COLORS) else matplotlib.colormaps["tab20"].colors
    return palette[data.arms.index(arm) % len(palette)] if arm in data.arms else "grey"


def _epoch_axis(ax) -> None:
    """Call after drawing: whole epochs on the x axis; an axis of one epoch spans one epoch around
    it (left alone, matplotlib draws a tenth of an epoch with ticks at 0.945, 0.96, ...)."""
    ax.set_xlabel("epoch")
    if ax.has_data():
        first, last = ax.dataLim.intervalx
        if np.isfinite([first, last]).all() and last - first < 1:
            ax.set_xlim(first - 0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)


BAR_STEP = 0.05  # a bar chart's value axis starts and ends on a multiple of this


def value_limits(values: list[float], upper: float = 1.0) -> tuple[float, float]:
    """Limits of a bar chart's value axis near the data rather than from 0 (bars of 0.70 to 0.78 from
    0 all look alike): a little below the lowest value to a little above the highest, on BAR_STEP,
    within [0, ``upper``] unless a value lies beyond; never of zero height. ``values``: every bar top
    and error-bar end; those that are not finite (a class no seed tested) are ignored."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, upper
    low, high = min(finite), max(finite)
    pad = max(0.05 * (high - low), 0.01)
    bottom = max(0.0, round(math.floor((low - pad) / BAR_STEP) * BAR_STEP, 6))  # 0.35, not 0.35000000000000003
    top = round(math.ceil((high + pad) / BAR_STEP) * BAR_STEP, 6)
    return bottom, min(top, upper) if high <= upper else top


def _draw_arm(ax, data: ReportData, arm: str, key: str, color, smooth: bool = False) -> None:
    """One arm's curve of ``key``: the mean over finished seeds with a +- std band, and each partial
    run dashed on its own, so a partial run is never averaged in."""
    f = ema if smooth else (lambda v: list(v))
    curve = _mean_curve(data.finished(arm), key)
    if curve is not None:
        x, mean, std = curve
        ax.plot(x, f(mean), color=color, marker="o", markersize=3, label=literal(f"{arm} (n={len(data.finished(arm))})"))
        if std is not None and len(x) == 1:  # a band around one epoch has no width: an error bar
            ax.errorbar(x, mean, yerr=std, color=color, capsize=3, linewidth=1)
        elif std is not None:
            ax.fill_between(x, f(mean - std), f(mean + std), color=color, alpha=0.15, linewidth=0)
    for run in data.runs:
        if run.arm == arm and run.partial:
            x, v = _series(run, key)
            if x:
                ax.plot(x, f(v), color=color, linestyle="--", marker="x", markersize=3,
                        label=literal(f"{run.label} (partial)"))


def _draw_arm_curves(ax, data: ReportData, key: str, smooth: bool) -> None:
    for arm in data.arms:
        _draw_arm(ax, data, arm, key, _color(data, arm), smooth)


def _legend(ax, **kwargs) -> None:
    """A legend when something was drawn (a run with no epoch yet draws nothing)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def curves_figure(data: ReportData, key: str, ylabel: str) -> Figure:
    """The seed's figures 3 and 4: one validation metric for all arms, raw and smoothed."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    for ax, smooth in zip(fig.subplots(1, 2), (False, True)):
        _draw_arm_curves(ax, data, key, smooth)
        ax.set_title("smoothed (EMA 0.6)" if smooth else "raw")
        ax.set_ylabel(ylabel)
        _epoch_axis(ax)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return fig


def arm_figure(data: ReportData, arm: str) -> Figure:
    """The seed's figures 1 and 2 for one arm: losses and accuracies per epoch, one line per seed."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, run in enumerate(r for r in data.runs if r.arm == arm):
        style = "--" if run.partial else "-"
        tag = f"seed {run.seed}" + (" (partial)" if run.partial else "")
        for ax, key, name, color in ((ax_loss, "train_loss", "train loss", COLORS[0]),
                                     (ax_loss, "val_loss", "val loss", COLORS[1]),
                                     (ax_acc, "val_acc", "val acc", COLORS[2]),
                                     (ax_acc, "test_acc", "test acc", COLORS[3])):
            x, v = _series(run, key)
            if x:
                ax.plot(x, v, linestyle=style, color=color, alpha=1.0 if i == 0 else 0.6, marker="o", markersize=2,
                        label=literal(f"{name}, {tag}"))
    for ax, ylabel in ((ax_loss, "loss (validation: plain cross-entropy)"), (ax_acc, "accuracy")):
        ax.set_ylabel(ylabel)
        _epoch_axis(ax)
        _legend(ax, fontsize=7)
    fig.suptitle(literal(f"arm {arm}"))
    return fig


def _per_seed(runs: list[RunRecord], key: str) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in r.summary[key]] for r in runs], dtype=float)


def _class_ticks(set_ticks, classes: list[str], indices: int, **kwargs) -> None:
    """Class names as tick labels, or, when there are too many to read, the class index at about
    ``indices`` evenly spaced classes."""
    if len(classes) <= TICK_LABELS:
        set_ticks(range(len(classes)), [literal(c, 24) for c in classes], **kwargs)
    else:
        step = math.ceil(len(classes) / indices)
        set_ticks(range(0, len(classes), step), [str(j) for j in range(0, len(classes), step)],
                  fontsize=kwargs.get("fontsize"))


def _grid(n: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` panels, up to three a row; panels beyond ``n`` hidden."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def per_class_figure(data: ReportData) -> Figure:
    """Test recall of every class, mean over seeds (error bar: std), one bar per arm."""
    arms = [a for a in data.arms if data.finished(a)]
    classes = data.classes
    width = min(MAX_WIDTH, max(8.0, 0.9 * min(len(classes), TICK_LABELS) * max(1, len(arms)) / 3))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(arms))
    x = np.arange(len(classes))
    ends: list[float] = []
    for i, arm in enumerate(arms):
        acc = _per_seed(data.finished(arm), "per_class_acc")
        mean = np.nanmean(acc, axis=0)
        err = np.nanstd(acc, axis=0, ddof=1) if acc.shape[0] > 1 else None
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, mean, width, yerr=err, color=_color(data, arm),
               label=literal(arm), capsize=2)
        spread = 0 if err is None else np.nan_to_num(err)
        ends += [*(mean - spread), *(mean + spread)]
    _class_ticks(ax.set_xticks, classes, 25, rotation=30, ha="right")
    ax.set_ylabel("test accuracy of the class (recall)")
    ax.set_ylim(*value_limits(ends))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(4, max(1, len(arms))))
    return fig


def confusion_figure(data: ReportData) -> Figure:
    """Row-normalised test confusion matrices, summed over each arm's finished seeds."""
    arms = [a for a in data.arms if data.finished(a)]
    c = len(data.classes)
    fig, axes = _grid(len(arms), 4.6, 4.3)
    image = None
    for ax, arm in zip(axes, arms):
        cm = np.sum([np.array(r.summary["confusion"], dtype=float) for r in data.finished(arm)], axis=0)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if c <= 12:
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        _class_ticks(ax.set_xticks, data.classes, 8, rotation=90, fontsize=7)
        _class_ticks(ax.set_yticks, data.classes, 8, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(literal(f"{arm} (n={len(data.finished(arm))})"), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.6, label="fraction of the true class")
    return fig


def pooled_calibration_bins(runs: list[RunRecord]) -> np.ndarray | None:
    """The (count, confidence sum, correct) rows of ``runs``' test_calibration_bins, added bin by bin
    over the runs that have as many bins as the first that has any; None when none has them."""
    tables = [np.array([bins[k] for k in ("count", "confidence_sum", "correct")], dtype=float)
              for run in runs if (bins := run.summary.get("test_calibration_bins")) is not None]
    tables = [t for t in tables if t.shape == tables[0].shape] if tables else []
    return np.sum(tables, axis=0) if tables else None


def reliability_figure(data: ReportData, arms: list[str]) -> Figure:
    """Per arm, a reliability diagram of the test set (Guo et al. 2017): in each equal-width bin of
    the predicted class's confidence, the fraction of right predictions (a bar over the bin) and, as a
    dot, that fraction at the bin's mean confidence; the dashed diagonal is perfect calibration.
    Bins of all the arm's finished seeds are added before dividing; empty bins draw nothing."""
    fig, axes = _grid(len(arms), 3.6, 3.5)
    for ax, arm in zip(axes, arms):
        count, conf_sum, correct = pooled_calibration_bins(data.finished(arm))
        edges = np.linspace(0, 1, len(count) + 1)
        seen = count > 0
        accuracy = correct[seen] / count[seen]
        ax.bar(edges[:-1][seen], accuracy, np.diff(edges)[seen], align="edge", color=_color(data, arm), alpha=0.6,
               edgecolor="white", linewidth=0.5, label="accuracy of the bin")
        ax.plot(conf_sum[seen] / count[seen], accuracy, "o", color="black", markersize=3,
                label="at the bin's mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
        ece = float(np.abs(correct - conf_sum).sum() / max(count.sum(), 1))
        ax.set_title(literal(f"{arm} (n={len(data.finished(arm))}), ECE {ece:.3f}"), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("confidence (softmax of the predicted class)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    return fig


def class_size_figure(data: ReportData, arms: list[str]) -> Figure:
    """Per arm, the test accuracy of each class (mean over seeds) against the class's kept training
    images (mean over seeds; the imbalanced set before any oversampling), on a log axis: a line
    through the classes in order of size. A log axis cannot show 0: with a class of no kept image the
    axis is linear from 0 to 1 and logarithmic beyond (symlog)."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    everything = []
    for arm in arms:
        runs = [r for r in data.finished(arm) if r.summary.get("kept_class_counts")]
        counts = np.mean([r.summary["kept_class_counts"] for r in runs], axis=0)
        acc = np.nanmean(_per_seed(runs, "per_class_acc"), axis=0)
        order = np.argsort(counts, kind="stable")
        ax.plot(counts[order], acc[order], marker="o", markersize=4, linewidth=1, alpha=0.85, color=_color(data, arm),
                label=literal(f"{arm} (n={len(runs)})"))
        everything += list(counts)
    low, high = min(everything), max(everything)
    if low <= 0:
        ax.set_xscale("symlog", linthresh=1)
    else:
        ax.set_xscale("log")
    if high <= max(low, 1) * 1.5:  # one size (a balanced set): a log axis of a single point has no span
        ax.set_xlim(0 if low <= 0 else low / 2, max(high, 1) * 2)
    sizes = sorted(set(np.round(everything).astype(int).tolist()))
    if len(sizes) <= SIZE_TICKS:  # few sizes (a step profile, CIFAR-10-LT): label each; powers of 10 may miss them all
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training images of the class (kept, log scale)")
    ax.set_ylabel("test accuracy of the class (recall)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncols=min(3, len(arms)))
    return fig


def results_figure(data: ReportData, series: list[tuple[str, str]]) -> Figure:
    """Per arm, one bar per (aggregate metric, legend label) of ``series``: the mean over seeds with
    the standard deviation as an error bar; the seed report's best accuracy (a diamond) on the bar of
    best_test_acc_over_epochs where the arm is the seed's. The value axis starts near the data."""
    arms = [a for a in data.arms if a in data.aggregate["arms"]]
    fig = Figure(figsize=(max(6.0, 0.5 * len(series) * len(arms) + 3), 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(arms))
    width = 0.8 / len(series)
    offsets = {key: (k - (len(series) - 1) / 2) * width for k, (key, _) in enumerate(series)}
    ends: list[float] = []
    for k, (key, name) in enumerate(series):
        stats = [data.aggregate["arms"][a][key] for a in arms]
        means = [np.nan if s["mean"] is None else s["mean"] for s in stats]
        spread = [s["std"] or 0 for s in stats]
        ax.bar(x + offsets[key], means, width, color=COLORS[k % len(COLORS)], label=name, yerr=spread, capsize=3)
        ends += [m - e for m, e in zip(means, spread)] + [m + e for m, e in zip(means, spread)]
    seed = [(i, v) for i, a in enumerate(arms) if (v := data.seed_number(a)) is not None]
    if seed and "best_test_acc_over_epochs" in offsets:
        ax.scatter([i + offsets["best_test_acc_over_epochs"] for i, _ in seed], [v for _, v in seed], marker="D",
                   color="black", zorder=3, label="seed report (best over epochs)")
        ends += [v for _, v in seed]
    ax.set_xticks(x, [literal(a) for a in arms], rotation=20, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(*value_limits(ends))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


PRETEXT_PANELS = (
    ("loss (BCE)", (("train_loss", "train"), ("val_loss", "validation"))),
    ("tiles in the right place", (("val_position_acc_argmax", "argmax"), ("val_position_acc_hungarian", "Hungarian"))),
    ("whole puzzles solved", (("val_puzzle_acc_argmax", "argmax"), ("val_puzzle_acc_hungarian", "Hungarian"))),
    ("confidence (mean of Y at the true permutation)", (("val_confidence", "validation"),)),
)


def pretext_figure(data: ReportData) -> Figure:
    """The jigsaw pretext curves (Homework 03, figure 3), one line per pretraining seed, with the
    seed report's best value over its 10 epochs as a dotted line."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    for ax, (title, keys) in zip(fig.subplots(2, 2).ravel(), PRETEXT_PANELS):
        for k, (key, name) in enumerate(keys):
            for run in data.jigsaw_pretrain:
                x, v = _series(run, key)
                if x:
                    tag = (f"seed {run.seed}" if run.arm == "pretrain" else run.label) + (" (partial)" if run.partial
                                                                                         else "")
                    ax.plot(x, v, color=COLORS[k], linestyle="--" if run.partial else "-", marker="o", markersize=2,
                            alpha=0.9, label=literal(f"{name}, {tag}"))
            if key in SEED_PRETEXT:
                ax.axhline(SEED_PRETEXT[key], color="black", linestyle=":", linewidth=1.2,
                           label=f"seed report, {name} (best of {SEED_PRETEXT_EPOCHS} epochs)")
        ax.set_title(title, fontsize=10)
        _epoch_axis(ax)
        _legend(ax, fontsize=7)
    return fig


INIT_PANELS = (("val_loss", "validation loss (cross-entropy)"), ("val_acc", "validation accuracy"))


def init_figure(data: ReportData, pairs: list[tuple[str, str]]) -> Figure:
    """Homework 03, figure 4: per (random init, jigsaw init) pair of arms, validation loss and
    accuracy per epoch of both (mean over seeds, +- std band; partial runs dashed)."""
    fig = Figure(figsize=(11, 3.8 * len(pairs)), layout="constrained")
    axes = fig.subplots(len(pairs), len(INIT_PANELS), squeeze=False)
    for row, (plain, init) in zip(axes, pairs):
        for ax, (key, ylabel) in zip(row, INIT_PANELS):
            for arm, color in ((plain, COLORS[0]), (init, COLORS[3])):
                _draw_arm(ax, data, arm, key, color)
            ax.set_ylabel(ylabel)
            ax.set_title(literal(f"{plain} vs {init}"), fontsize=10)
            _epoch_axis(ax)
            _legend(ax, fontsize=7)
    return fig


def safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def render_figure(fig: Figure) -> dict[str, bytes]:
    """The figure as SVG and PDF bytes (no date inside: the same data draws the same files). The
    caller writes them (html.py, through owned.py, which knows what it may replace)."""
    out = {}
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "longtail"}):
        for fmt, metadata in (("svg", {"Date": None}), ("pdf", {"CreationDate": None})):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=metadata)
            out[fmt] = buf.getvalue()
    return out
