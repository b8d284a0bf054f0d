"""The report's HTML tables and sentences. Each function takes a :class:`ReportData` and returns
an HTML fragment; every string from a config, a class name or a file name goes through
html.escape, numbers are formatted here."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from longtail.aggregate import LONGTAIL_METRICS, METRICS, PAIRED_METRICS, mean_std, paired_comparison
from longtail.report.collect import ReportData, RunRecord
from longtail.report.reference import SEED_PADDING, SEED_PRETEXT, SEED_PRETEXT_EPOCHS

METRIC_NAMES = {
    "test_acc": "test acc",
    "test_balanced_acc": "balanced acc",
    "test_macro_f1": "macro-F1",
    "minority_acc": "minority acc",
    "majority_acc": "majority acc",
    "best_test_acc_over_epochs": "best test acc over epochs",
    "test_ece": "ECE",
    "many_acc": "many (> 100 images)",
    "medium_acc": "medium (20-100)",
    "few_acc": "few (< 20)",
    "head_acc": "head (3 largest classes)",
    "middle_acc": "middle (next 4)",
    "tail_acc": "tail (3 smallest)",
}
# What the long-tail table's columns mean, each said when a column of its kind is shown.
LONGTAIL_NOTES = (
    (("test_ece",), "ECE: expected calibration error of the test set, the sum over confidence bins of "
                    "(images in the bin / all images) &times; |accuracy &minus; mean confidence|; lower is better."),
    (("many_acc", "medium_acc", "few_acc"), "Many / medium / few: the mean test recall of the classes with "
                                            "&gt; 100, 20-100, &lt; 20 kept training images (before any oversampling)."),
    (("head_acc", "middle_acc", "tail_acc"), "Head / middle / tail: the mean test recall of the 3 / 4 / 3 classes "
                                             "in order of kept training images."),
)
# What a headline may rank arms on: higher is better, and aggregate.py has it per seed.
HEADLINE_METRICS = ("test_balanced_acc", "test_acc", "test_macro_f1")
SETTINGS = ("recipe", "epochs", "imbalance", "rebalance", "loss", "loss_params", "padding", "init", "stage", "transfer",
            "limit_train", "grid", "gap", "tile_norm", "grayscale")
PRETEXT_ROWS = (
    ("val_position_acc_argmax", "tiles in the right place, argmax"),
    ("val_position_acc_hungarian", "tiles in the right place, Hungarian"),
    ("val_puzzle_acc_argmax", "whole puzzles solved, argmax"),
    ("val_puzzle_acc_hungarian", "whole puzzles solved, Hungarian"),
    ("val_confidence", "confidence"),
)
DASH = "&ndash;"


def num(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def mean_pm_std(stat: dict) -> str:
    if stat["mean"] is None:
        return DASH
    std = f" &plusmn; {stat['std']:.4f}" if stat["std"] is not None else ""
    return f"{stat['mean']:.4f}{std}"


def _table(table_id: str, head: list[str], rows: list[str]) -> str:
    """``head``: cells already escaped; ``rows``: complete <tr> elements."""
    cells = "".join(f"<th>{h}</th>" for h in head)
    return f"<table id='{table_id}'><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _row(*cells: str) -> str:
    """A <tr> of cells already escaped."""
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def results_table(data: ReportData) -> str:
    """Every metric per arm, mean +- std; the seed report's number beside ours when an arm has one."""
    arms = data.aggregate["arms"]
    if not arms:
        return '<p class="partial">No finished runs yet: no statistics.</p>'
    seeded = data.has_seed_numbers
    rows = []
    for arm in data.arms:
        if arm not in arms:
            continue
        entry = arms[arm]
        cells = [escape(arm), str(entry["n_seeds"]), *(mean_pm_std(entry[m]) for m in METRICS)]
        if seeded:
            seed = data.seed_number(arm)
            best = entry["best_test_acc_over_epochs"]["mean"]
            cells += [num(seed), f"{best - seed:+.4f}" if seed is not None and best is not None else DASH]
        rows.append(_row(*cells))
    head = ["arm", "seeds", *(escape(METRIC_NAMES[m]) for m in METRICS)]
    head += ["seed report (best over epochs)", "ours best &minus; seed"] if seeded else []
    return _table("results", head, rows)


def longtail_table(data: ReportData) -> str:
    """ECE and accuracy by class size per arm, mean +- std over seeds; only the columns some arm
    has (head/middle/tail needs 10 classes, ECE runs that recorded it); empty when none has any."""
    arms = [a for a in data.arms if a in data.aggregate["arms"]]
    entries = [data.aggregate["arms"][a] for a in arms]
    shown = [m for m in LONGTAIL_METRICS if any(e[m]["mean"] is not None for e in entries)]
    if not shown:
        return ""
    recovered = data.aggregate.get("recovery") or {}
    rows = [_row(escape(a), str(e["n_seeds"]), *(mean_pm_std(e[m]) for m in shown),
                 *([_percent(recovered.get(a, {}).get("test_balanced_acc"))] if recovered else []))
            for a, e in zip(arms, entries)]
    notes = [text for metrics, text in LONGTAIL_NOTES if set(metrics) & set(shown)]
    if recovered:
        notes.append(f"Recovery: the share of the balanced-accuracy gap between the baseline and the reference arm "
                     f"<code>{escape(data.aggregate['reference'])}</code> (no imbalance) that an arm wins back, "
                     "(arm &minus; baseline) / (reference &minus; baseline) of the means over shared seeds.")
    head = ["arm", "seeds", *(escape(METRIC_NAMES[m]) for m in shown)] + (["recovery"] if recovered else [])
    return (_table("long-tail", head, rows)
            + f"<p class='note'>{' '.join(notes)} &plusmn;: sample standard deviation over seeds.</p>")


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}".replace("-", "&minus;")


def _signed(value: float) -> str:
    return f"{value:+.4f}".replace("-", "&minus;")


def headline(data: ReportData, metric: str) -> str:
    """One paragraph: the arm with the highest mean ``metric``, its margin over its baseline arm (over
    the runner-up when it has none, or is a baseline itself) as the mean paired difference over the
    seeds both have, and whether that exceeds the seed-to-seed noise (aggregate.py's rule, with the
    t-test's 95% interval). Empty with fewer than two arms with finished runs."""
    arms = data.aggregate["arms"]
    reference = data.aggregate.get("reference")
    # The reference arm trains on other data (no imbalance): it sets the bar, it does not compete.
    ranked = [a for a in data.arms if a in arms and arms[a][metric]["mean"] is not None and a != reference]
    if len(ranked) < 2:
        return ""
    name = escape(METRIC_NAMES[metric])
    winner = max(ranked, key=lambda a: arms[a][metric]["mean"])  # of equal means, the first in arm order
    base = data.aggregate["baselines"].get(winner)
    if base is not None:
        other, role = base, "its baseline"
    else:
        other = max((a for a in ranked if a != winner), key=lambda a: arms[a][metric]["mean"])
        role = "the next best arm"
    p = paired_comparison(_per_seed(arms[winner], metric), _per_seed(arms[other], metric))
    lead = "The baseline arm" if winner in data.aggregate["baselines"].values() else "Arm"
    text = (f"{lead} <strong>{escape(winner)}</strong> has the highest {name}, {mean_pm_std(arms[winner][metric])} "
            f"over {arms[winner]['n_seeds']} seed(s); {role}, <code>{escape(other)}</code>, has "
            f"{mean_pm_std(arms[other][metric])}. ")
    if p["n"] == 0:
        diff = arms[winner][metric]["mean"] - arms[other][metric]["mean"]
        text += (f"Difference of the means {_signed(diff)}; the arms share no seed, so it cannot be set against "
                 "the seed-to-seed noise.")
    else:
        detail = []
        if p["diff_ci95"] is not None:
            low, high = p["diff_ci95"]
            detail.append(f"95% interval {_signed(low)} to {_signed(high)}")
        if p["p_value"] is not None:
            detail.append(f"p = {p['p_value']:.3g}")
        if p.get("baseline_std") is not None:
            detail.append(f"2 &times; the std of <code>{escape(other)}</code> = {2 * p['baseline_std']:.4f}")
        verdict = {True: "more than the seed-to-seed noise", False: "within the seed-to-seed noise",
                   None: "too few seeds to tell it from the seed-to-seed noise"}[p["exceeds_noise"]]
        text += (f"Margin {_signed(p['diff_mean'])}, the mean difference over {p['n']} paired seed(s)"
                 f"{' (' + ', '.join(detail) + ')' if detail else ''}: {verdict} ({escape(p['rule'] or 'no rule')}).")
    won_back = data.aggregate.get("recovery", {}).get(winner, {}).get(metric)
    if won_back is not None and base is not None:
        gap = arms[reference][metric]["mean"] - arms[base][metric]["mean"]
        text += (f" It wins back {won_back:.1%} of the {gap:.4f} that imbalance costs its baseline (reference arm "
                 f"<code>{escape(reference)}</code>, {mean_pm_std(arms[reference][metric])}: recovery = (arm "
                 "&minus; baseline) / (reference &minus; baseline), means over shared seeds).")
    return f"<p id='headline'>{text}</p>"


def seed_table(data: ReportData) -> str:
    """Homework 02, table 2: the best accuracy over epochs per arm, the seed's beside ours."""
    arms = data.aggregate["arms"]
    rows = []
    for arm in data.arms:
        entry = arms.get(arm)
        seed = data.seed_number(arm)
        if entry is None:
            rows.append(_row(escape(arm), num(seed), "no finished run", DASH, DASH))
            continue
        best = entry["best_test_acc_over_epochs"]
        diff = f"{best['mean'] - seed:+.4f}" if seed is not None and best["mean"] is not None else DASH
        rows.append(_row(escape(arm), num(seed), f"{mean_pm_std(best)} (n={entry['n_seeds']})", diff,
                         mean_pm_std(entry["test_acc"])))
    head = ["arm", "seed report", "ours: best test acc over epochs, mean &plusmn; std", "ours &minus; seed",
            "ours: test acc at the epoch chosen on validation"]
    return _table("seed-table", head, rows)


def _per_seed(entry: dict, metric: str) -> dict[int, float]:
    """seed -> ``metric`` of an arm's aggregate entry, for the seeds that have it (a summary may
    lack an optional figure such as best_test_acc_over_epochs)."""
    return {int(s): r[metric] for s, r in entry["per_seed"].items() if r[metric] is not None}


def padding_sentence(data: ReportData, same: str, valid: str) -> str:
    """One sentence: 'same' vs 'valid' padding, from two arms that differ only in it."""
    arms = data.aggregate["arms"]
    if same not in arms or valid not in arms:
        return (f"<p>Padding: arms <code>{escape(same)}</code> ('same') and <code>{escape(valid)}</code> ('valid') "
                f"have no finished runs to compare yet. {escape(SEED_PADDING)}</p>")
    best = {a: arms[a]["best_test_acc_over_epochs"] for a in (same, valid)}
    test = {a: arms[a]["test_acc"] for a in (same, valid)}
    per_seed = {a: _per_seed(arms[a], "test_acc") for a in (same, valid)}
    paired = paired_comparison(per_seed[same], per_seed[valid])
    verdict = {True: "more than", False: "within", None: "with too few seeds to compare with"}[paired["exceeds_noise"]]
    diff = paired["diff_mean"]
    which = DASH if diff is None else ("'same'" if diff > 0 else "'valid'" if diff < 0 else "neither")
    return (f"<p id='padding'>Padding: with 'same' padding (<code>{escape(same)}</code>) the classifier reaches "
            f"{mean_pm_std(test[same])} test accuracy at the epoch chosen on validation "
            f"(best over epochs {mean_pm_std(best[same])}), with 'valid' padding (<code>{escape(valid)}</code>) "
            f"{mean_pm_std(test[valid])} (best {mean_pm_std(best[valid])}); {which} is better by "
            f"{num(None if diff is None else abs(diff))} on paired seeds, {verdict} the seed-to-seed noise "
            f"({escape(paired['rule'] or 'no rule')}). {escape(SEED_PADDING)}</p>")


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
            base = data.aggregate.get("baselines", {}).get(arm, data.baseline or "")
            rows.append(_row(escape(arm), escape(base), escape(METRIC_NAMES[metric]), str(p["n"]), num(p["diff_mean"]),
                             num(p["diff_std"]), num(p["p_value"], 3), verdict, escape(p["rule"] or "")))
    head = ["arm", "vs", "metric", "paired seeds", "mean diff", "std of diff", "p", "exceeds seed noise?", "rule"]
    return _table("paired", head, rows)


def per_class_table(data: ReportData) -> str:
    """Test recall of every class per arm, mean over finished seeds."""
    rows = []
    for arm in data.arms:
        runs = data.finished(arm)
        if not runs:
            continue
        means = []
        for j in range(len(data.classes)):
            values = [r.summary["per_class_acc"][j] for r in runs if r.summary["per_class_acc"][j] is not None]
            means.append(num(mean_std(values)["mean"]))
        rows.append(_row(escape(arm), *means))
    return _table("per-class", ["arm", *(escape(c) for c in data.classes)], rows)


def pretext_table(data: ReportData) -> str:
    """Homework 03's jigsaw figures: the seed's best over 10 epochs beside ours (best over epochs on
    validation, and on the test set at the epoch chosen), mean +- std over finished pretraining seeds."""
    finished = [r for r in data.jigsaw_pretrain if not r.partial]
    rows = []
    for key, name in PRETEXT_ROWS:
        # a figure may be null (validate.py allows it): not a value to average
        best = mean_std([v for r in finished if (v := r.summary.get("best_over_epochs", {}).get(key)) is not None])
        test = mean_std([v for r in finished if (v := r.summary.get(f"test_{key[4:]}")) is not None])
        rows.append(_row(escape(name), num(SEED_PRETEXT.get(key)), mean_pm_std(best), mean_pm_std(test)))
    epochs = sorted({_setting(r.summary.get("epochs"), 20) for r in finished})
    head = ["jigsaw figure", f"seed report (best of {SEED_PRETEXT_EPOCHS} epochs)",
            f"ours: best over {escape('/'.join(epochs) or '?')} epochs, validation (n={len(finished)})",
            "ours: test set, epoch chosen on validation"]
    return _table("pretext", head, rows)


def init_table(data: ReportData, pairs: list[tuple[str, str]]) -> str:
    """Homework 03's classifier with and without jigsaw initialisation: per pair of arms, both
    figures and their paired difference, beside the seed's 0.7259 -> 0.7429."""
    arms = data.aggregate["arms"]
    rows = []
    for plain, init in pairs:
        seed_plain, seed_init = data.seed_number(plain), data.seed_number(init)
        seed = f"{seed_plain:.4f} &rarr; {seed_init:.4f}" if seed_plain and seed_init else DASH
        for metric in ("test_acc", "best_test_acc_over_epochs"):
            if plain not in arms or init not in arms:
                rows.append(_row(escape(plain), escape(init), escape(METRIC_NAMES[metric]), DASH, DASH,
                                 "no finished runs in both arms", DASH,
                                 seed if metric == "best_test_acc_over_epochs" else DASH))
                continue
            per_seed = {a: _per_seed(arms[a], metric) for a in (plain, init)}
            p = paired_comparison(per_seed[init], per_seed[plain])
            verdict = {True: "yes", False: "no", None: "undetermined"}[p["exceeds_noise"]]
            diff = DASH if p["diff_mean"] is None else f"{p['diff_mean']:+.4f}"
            rows.append(_row(escape(plain), escape(init), escape(METRIC_NAMES[metric]), mean_pm_std(arms[plain][metric]),
                             mean_pm_std(arms[init][metric]), f"{diff} (n={p['n']})", verdict,
                             seed if metric == "best_test_acc_over_epochs" else DASH))
    head = ["random init", "pretrained init", "metric", "random init", "pretrained init",
            "pretrained &minus; random, paired",
            "exceeds seed noise?", "seed report"]
    return _table("init", head, rows)


def _listed(value: object) -> list:
    """A layer's shape as a list: as summary.json has it, or a hand-edited lone value."""
    return value if isinstance(value, list) else [] if value is None else [value]


def layer_map_tables(data: ReportData) -> str:
    """Homework 03, table 2: the layer map of each arm with init, as its summary.json records it
    (identical maps are shown once, with the arms that used them)."""
    maps: dict[str, tuple[dict, list[str]]] = {}
    for arm in data.arms:
        run = next((r for r in data.finished(arm) if "transfer" in r.summary), None)
        if run is None:
            continue
        transfer = run.summary["transfer"]
        key = json.dumps([transfer.get("freeze"), transfer.get("layers")])
        maps.setdefault(key, (transfer, []))[1].append(arm)
    parts = []
    for n, (transfer, arms) in enumerate(maps.values()):
        rows = [_row(escape(str(layer.get("name"))), escape(" x ".join(map(str, _listed(layer.get("shape"))))) or DASH,
                     escape(str(layer.get("status"))), escape(str(layer["from"])) if layer.get("from") else DASH)
                for layer in transfer.get("layers", [])]
        mode = "transferred layers frozen" if transfer.get("freeze") else "all layers fine-tuned"
        grid = transfer.get("pretrain_grid")
        source = (f"a {grid}x{grid} jigsaw checkpoint" if grid is not None else
                  f"a {transfer.get('source_kind') or 'classifier'} checkpoint ({transfer.get('source_arch', '?')})")
        parts.append(f"<p>Arms {escape(', '.join(arms))} ({mode}; from {escape(source)}, e.g. "
                     f"<code>{escape(str(transfer.get('checkpoint')))}</code>):</p>")
        parts.append(_table(f"layer-map-{n}", ["classifier layer", "weight shape", "status", "from layer"], rows))
    return "".join(parts)


def _status(run: RunRecord) -> str:
    if run.partial:
        return f'<span class="partial">partial: {len(run.metrics)} of {escape(_setting(run.config.get("epochs", "?"), 20))} epochs</span>'
    return "finished"


def _setting(value: object, limit: int = 80) -> str:
    """A config value for the runs table, cut short: a hand-edited config may hold a long list."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def runs_table(data: ReportData) -> str:
    rows = []
    for run in data.runs + data.pretrain:
        staged = run.config.get("stage", "none") != "none"
        shown = [k for k in SETTINGS if run.config.get(k) not in (None, "", {}, [])
                 and (k != "stage" or staged)
                 # finetune vs freeze means nothing without init, nor with a stage (it freezes itself)
                 and (k != "transfer" or (run.config.get("init") and not staged))]
        settings = ", ".join(f"{k}={_setting(run.config[k])}" for k in shown)
        acc = num(run.summary.get("test_acc")) if run.summary else DASH
        folder = run.path.relative_to(data.root) if run.path != data.root else Path(".")
        rows.append(_row(escape(run.arm), escape(str(run.seed)), _status(run), acc, escape(settings),
                         f"<code>{escape(str(folder))}</code>"))
    return _table("runs", ["arm", "seed", "status", "test acc", "settings", "folder"], rows)
