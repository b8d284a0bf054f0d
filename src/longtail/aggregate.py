"""Statistics over a study's finished runs: per-arm mean and standard deviation over seeds, and a
paired comparison of every arm with a baseline arm. Pure functions of run summaries (summary.json).

Standard deviations are sample standard deviations (ddof = 1); with one seed there is none (null).

Long-tail figures: ``test_ece`` as the run's summary.json records it; many / medium / few accuracy
(> 100, 20-100, < 20 kept training images) and, for 10 classes, head / middle / tail accuracy (3 / 4 /
3 classes by kept count) from the run's per_class_acc and kept_class_counts with the very functions
that write summary.json's test_acc_by_class_size and test_acc_by_thirds (so runs from before those
fields get them too); null where a run has no such group.

Minority and majority accuracy: a run's minority classes are those whose kept training count (after
the imbalance profile, before rebalancing: summary["kept_class_counts"]) is below half the largest
class's; majority classes are the rest. Each figure is the mean recall over its classes, null when
the run has no such class (a balanced run has no minority classes).

Noise rule of the paired comparison (same seeds in both arms, difference arm - baseline per seed):
with n >= 3 paired seeds, the difference exceeds the seed-to-seed noise when a two-sided paired
t-test (scipy.stats.ttest_rel) gives p < 0.05 (equivalently: its 95% interval of the mean
difference, ``diff_ci95``, excludes 0); with n = 2, when |mean difference| > 2 x the
baseline's standard deviation over those seeds; with n = 1 it is undetermined (null).

Recovery (when the study names a ``reference`` arm, e.g. the same network and protocol on the balanced
set): the share of what imbalance costs that an arm wins back, (arm - baseline) / (reference -
baseline) of the means over the seeds all three share, per paired metric; null for the baseline and
the reference themselves, and when the reference does not beat the baseline (nothing to recover).
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from scipy import stats

from longtail.data.imbalance import minority_classes
from longtail.metrics import accuracy_by_class_size, accuracy_by_thirds

METRICS = ("test_acc", "test_balanced_acc", "test_macro_f1", "minority_acc", "majority_acc",
           "best_test_acc_over_epochs")
# Kept apart from METRICS so results.csv's earlier columns keep their places.
LONGTAIL_METRICS = ("test_ece", "many_acc", "medium_acc", "few_acc", "head_acc", "middle_acc", "tail_acc")
PAIRED_METRICS = ("test_acc", "test_balanced_acc")
ALPHA = 0.05
NOISE_RULE = ("paired t-test (scipy.stats.ttest_rel, two-sided) at 5% when n >= 3 seeds; "
              "|mean diff| > 2 x baseline std when n = 2; undetermined when n = 1")
MINORITY_RULE = "minority classes: kept training count < max kept count / 2 (per run); majority: the rest"


def _mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def run_metrics(summary: dict) -> dict[str, float | None]:
    """The aggregated figures of one finished run, minority/majority accuracy included."""
    per_class = summary.get("per_class_acc") or []
    kept = summary.get("kept_class_counts") or []
    minority = set(minority_classes(kept)) if kept else set()
    out = {k: summary.get(k) for k in METRICS if k not in ("minority_acc", "majority_acc")}
    out["minority_acc"] = _mean_of([a for j, a in enumerate(per_class) if j in minority]) if minority else None
    out["majority_acc"] = _mean_of([a for j, a in enumerate(per_class) if j not in minority])
    out["test_ece"] = summary.get("test_ece")
    sizes = accuracy_by_class_size(kept, per_class) if kept else {}
    thirds = (accuracy_by_thirds(kept, per_class) if kept else None) or {}
    for group in ("many", "medium", "few"):
        out[f"{group}_acc"] = sizes.get(group)
    for group in ("head", "middle", "tail"):
        out[f"{group}_acc"] = thirds.get(group)
    return out


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (None with fewer than two values)."""
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def paired_comparison(arm: dict[int, float], baseline: dict[int, float]) -> dict:
    """Difference arm - baseline over the seeds both have, and whether it exceeds the noise."""
    seeds = sorted(set(arm) & set(baseline))
    diffs = [arm[s] - baseline[s] for s in seeds]
    n = len(diffs)
    result = {"seeds": seeds, "n": n, **{f"diff_{k}": v for k, v in mean_std(diffs).items() if k != "n"},
              "p_value": None, "diff_ci95": None, "exceeds_noise": None, "rule": None}
    if n >= 3:
        mean = result["diff_mean"]
        if statistics.pstdev(diffs) == 0:  # identical differences: the t statistic is undefined
            p, half = (1.0 if diffs[0] == 0 else 0.0), 0.0
        else:
            p = float(stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
            half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * result["diff_std"] / math.sqrt(n)
        result.update(p_value=p, diff_ci95=[mean - half, mean + half], exceeds_noise=p < ALPHA,
                      rule="paired t-test, p < 0.05")
    elif n == 2:
        noise = statistics.stdev([baseline[s] for s in seeds])
        result.update(exceeds_noise=abs(result["diff_mean"]) > 2 * noise, rule="|mean diff| > 2 x baseline std",
                      baseline_std=noise)
    elif n == 1:
        result["rule"] = "one seed: no noise estimate"
    return result


def recovery(arm: dict[int, float], baseline: dict[int, float], reference: dict[int, float]) -> float | None:
    """(arm - baseline) / (reference - baseline) of the means over the seeds all three have."""
    seeds = set(arm) & set(baseline) & set(reference)
    if not seeds:
        return None
    base = statistics.fmean(baseline[s] for s in seeds)
    cost = statistics.fmean(reference[s] for s in seeds) - base
    return (statistics.fmean(arm[s] for s in seeds) - base) / cost if cost > 0 else None


def aggregate_runs(summaries: dict[str, dict[int, dict]], baseline: str | dict[str, str] | None,
                   reference: str | None = None) -> dict:
    """``summaries[arm][seed]`` -> per-arm statistics and paired comparisons: of every other arm with
    ``baseline`` (an arm name), or of each arm with its own (``{arm: baseline arm}``); with a
    ``reference`` arm, each compared arm's recovery of the gap between its baseline and the reference."""
    per_run = {arm: {seed: run_metrics(s) for seed, s in runs.items()} for arm, runs in summaries.items()}
    arms = {}
    for arm, runs in per_run.items():
        entry = {"seeds": sorted(runs), "n_seeds": len(runs)}
        for metric in METRICS + LONGTAIL_METRICS:
            values = [r[metric] for r in runs.values() if r[metric] is not None]
            entry[metric] = mean_std(values)
        entry["per_seed"] = {str(seed): runs[seed] for seed in sorted(runs)}
        arms[arm] = entry
    if isinstance(baseline, dict):
        baselines = dict(baseline)
        baseline = next(iter(set(baselines.values()))) if len(set(baselines.values())) == 1 else None
    else:
        baselines = {arm: baseline for arm in per_run if baseline is not None and arm != baseline}
    baselines = {arm: base for arm, base in baselines.items() if arm in per_run and base in per_run}
    def by_seed(arm: str, metric: str) -> dict[int, float]:
        return {s: r[metric] for s, r in per_run[arm].items() if r[metric] is not None}

    paired = {arm: {metric: paired_comparison(by_seed(arm, metric), by_seed(base_arm, metric))
                    for metric in PAIRED_METRICS} for arm, base_arm in baselines.items()}
    reference = reference if reference in per_run else None
    recovered = {arm: {metric: recovery(by_seed(arm, metric), by_seed(base_arm, metric), by_seed(reference, metric))
                       for metric in PAIRED_METRICS}
                 for arm, base_arm in baselines.items() if reference not in (None, arm, base_arm)}
    return {"arms": arms, "baseline": baseline, "baselines": baselines, "paired": paired, "reference": reference,
            "recovery": recovered, "noise_rule": NOISE_RULE,
            "minority_rule": MINORITY_RULE, "std": "sample standard deviation over seeds (ddof=1)"}


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def results_csv(aggregate: dict) -> str:
    """One row per arm: mean and std of every metric, the paired comparison's figures, then the
    long-tail figures' mean and std and the recovery (added last, so earlier columns keep their places)."""
    header = ["arm", "n_seeds"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    header += ["baseline_arm"]
    header += [f"{m}_vs_baseline_{k}" for m in PAIRED_METRICS for k in ("diff_mean", "diff_std", "p_value", "exceeds_noise")]
    header += [f"{m}_{s}" for m in LONGTAIL_METRICS for s in ("mean", "std")]
    header += ["reference_arm"] + [f"{m}_recovery" for m in PAIRED_METRICS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for arm, entry in aggregate["arms"].items():
        row = [arm, entry["n_seeds"]] + [_fmt(entry[m][s]) for m in METRICS for s in ("mean", "std")]
        paired = aggregate["paired"].get(arm, {})
        row += [aggregate.get("baselines", {}).get(arm, "")]
        row += [_fmt(paired.get(m, {}).get(k)) for m in PAIRED_METRICS
                for k in ("diff_mean", "diff_std", "p_value", "exceeds_noise")]
        row += [_fmt(entry[m][s]) for m in LONGTAIL_METRICS for s in ("mean", "std")]
        recovered = aggregate.get("recovery", {}).get(arm)
        row += [aggregate.get("reference") or ""] + [_fmt((recovered or {}).get(m)) for m in PAIRED_METRICS]
        writer.writerow(row)
    return buf.getvalue()


RUN_FIELDS = ("best_epoch", "kept_indices_hash")  # from summary.json as it is, after the metrics


def runs_csv(summaries: dict[str, dict[int, dict]]) -> str:
    """One row per finished run (arm, seed): its figures as the aggregate sees them (run_metrics),
    then its best epoch and the hash of its kept training images, so one rerun seed can be compared."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["arm", "seed", *METRICS, *LONGTAIL_METRICS, *RUN_FIELDS])
    for arm, runs in summaries.items():
        for seed in sorted(runs):
            figures = run_metrics(runs[seed])
            writer.writerow([arm, seed, *(_fmt(figures[m]) for m in METRICS + LONGTAIL_METRICS),
                             *(_fmt(runs[seed].get(k)) for k in RUN_FIELDS)])
    return buf.getvalue()
