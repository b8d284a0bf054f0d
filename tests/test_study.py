"""Studies: a small grid runs, aggregates, resumes; shards and collect; bad study files."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from scipy import stats

from longtail.aggregate import aggregate_runs, mean_std, paired_comparison, results_csv
from longtail.cli import main
from longtail.errors import LongtailError
from longtail.study import grid, load_study, run_study, shard

SMALL = """
name = "small"
seeds = [0, 1]
[defaults]
recipe = "fast"
epochs = 1
limit_train = 1000   # + 500 validation + 500 test = 2,000 images
val_size = 500
limit_test = 500
[[arms]]
name = "balanced"
[[arms]]
name = "imbalanced"
imbalance = "step:10"
"""


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, cifar_zip):
    root = tmp_path_factory.mktemp("study")
    (root / "small.toml").write_text(SMALL)
    study = load_study(root / "small.toml", data=str(cifar_zip), out=root / "out", quiet=True)
    study.quiet = False  # per-run lines on, progress bars would go to stderr
    lines: list[str] = []
    aggregate, missing = run_study(study, log=lines.append)
    return root, study, aggregate, missing, lines


def _summaries(out: Path) -> dict:
    return {(arm, seed): json.loads((out / "runs" / arm / f"seed-{seed}" / "summary.json").read_text())
            for arm in ("balanced", "imbalanced") for seed in (0, 1)}


def test_every_cell_runs_into_its_own_run_directory(small_study):
    root, study, aggregate, missing, lines = small_study
    assert missing == [] and len(lines) == 4
    assert lines[0].startswith("balanced") and "seed 0" in lines[0] and "test acc" in lines[0]
    record = json.loads((root / "out" / "study.json").read_text())
    assert [(c["arm"], c["seed"]) for c in record["cells"]] == [
        ("balanced", 0), ("imbalanced", 0), ("balanced", 1), ("imbalanced", 1)]
    assert record["cells"][1]["config"]["imbalance"] == "step:10" and record["baseline"] == "imbalanced"
    s = _summaries(root / "out")
    assert s[("imbalanced", 0)]["kept_class_counts"][:5] == [10] * 5  # 100 per class, a tenth kept
    assert s[("imbalanced", 0)]["kept_indices_hash"] != s[("imbalanced", 1)]["kept_indices_hash"]


def test_aggregate_is_the_mean_and_std_of_the_runs(small_study):
    root, _, aggregate, _, _ = small_study
    s = _summaries(root / "out")
    on_disk = json.loads((root / "out" / "aggregate.json").read_text())
    assert on_disk["arms"].keys() == aggregate["arms"].keys() == {"balanced", "imbalanced"}
    for arm in ("balanced", "imbalanced"):
        accs = [s[(arm, seed)]["test_acc"] for seed in (0, 1)]
        assert on_disk["arms"][arm]["test_acc"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert on_disk["arms"][arm]["test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
        best = [s[(arm, seed)]["best_test_acc_over_epochs"] for seed in (0, 1)]
        assert on_disk["arms"][arm]["best_test_acc_over_epochs"]["mean"] == pytest.approx(statistics.fmean(best))
    # minority: classes 0-4 of the imbalanced runs (10 kept vs 100); a balanced run has none
    minority = [statistics.fmean(s[("imbalanced", seed)]["per_class_acc"][:5]) for seed in (0, 1)]
    majority = [statistics.fmean(s[("imbalanced", seed)]["per_class_acc"][5:]) for seed in (0, 1)]
    assert on_disk["arms"]["imbalanced"]["minority_acc"]["mean"] == pytest.approx(statistics.fmean(minority))
    assert on_disk["arms"]["imbalanced"]["majority_acc"]["mean"] == pytest.approx(statistics.fmean(majority))
    assert on_disk["arms"]["balanced"]["minority_acc"]["mean"] is None
    # paired: balanced - imbalanced per seed; with two seeds the rule is |diff| > 2 x baseline std
    diffs = [s[("balanced", seed)]["test_acc"] - s[("imbalanced", seed)]["test_acc"] for seed in (0, 1)]
    paired = on_disk["paired"]["balanced"]["test_acc"]
    assert paired["diff_mean"] == pytest.approx(statistics.fmean(diffs))
    noise = statistics.stdev([s[("imbalanced", seed)]["test_acc"] for seed in (0, 1)])
    assert paired["exceeds_noise"] == (abs(statistics.fmean(diffs)) > 2 * noise)
    rows = (root / "out" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("arm,n_seeds,test_acc_mean,test_acc_std") and len(rows) == 3
    assert rows[1].startswith("balanced,2,") and rows[2].startswith("imbalanced,2,")


def test_rerun_skips_finished_runs_and_resumes_the_rest(small_study, capsys):
    root, study, _, _, _ = small_study
    out = root / "out"
    before = _summaries(out)
    kept = out / "runs" / "balanced" / "seed-0" / "summary.json"
    mtime = kept.stat().st_mtime_ns
    shutil.rmtree(out / "runs" / "imbalanced" / "seed-1")  # deleted midway
    (out / "runs" / "balanced" / "seed-1" / "summary.json").unlink()  # stopped after its last checkpoint
    rc = main(["study", str(root / "small.toml"), "--data", study.data, "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and sum("finished earlier" in line for line in lines) == 2
    assert kept.stat().st_mtime_ns == mtime
    after = _summaries(out)
    # the same seed on the same machine gives the same numbers, whether rerun or resumed
    assert after[("imbalanced", 1)]["test_acc"] == before[("imbalanced", 1)]["test_acc"]
    assert after[("balanced", 1)]["test_acc"] == before[("balanced", 1)]["test_acc"]


def test_collect_aggregates_and_lists_missing_runs(small_study, tmp_path, capsys):
    root, study, _, _, _ = small_study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    rc = main(["study", str(root / "small.toml"), "--out", str(out), "--seeds", "0,1,2", "--collect"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("missing:") == 2 and "seed-2" in err
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["arms"]["balanced"]["n_seeds"] == 2 and len(aggregate["missing"]) == 2
    assert main(["study", str(root / "small.toml"), "--out", str(out), "--collect"]) == 0


def test_the_study_report_renders(small_study):
    from longtail.report import write_report

    root, _, _, _, _ = small_study
    html = write_report(root / "out").read_text()
    assert html.count("<img ") >= 6 and "seed report" in html
    assert "0.5924" in html and "balanced" in html
    assert (root / "out" / "figures" / "val-acc.pdf").exists()


# -- the grid, shards and the noise rule: no training -------------------------------------------

GRID = """
name = "g"
seeds = [0, 1, 2]
[defaults]
epochs = 1
[[arms]]
name = "a"
[[arms]]
name = "b"
loss = "focal"
loss_params = {gamma = 1}
"""


def test_shards_partition_the_grid(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    cells = grid(load_study(tmp_path / "g.toml", out=tmp_path / "out"))
    assert len(cells) == 6 and cells[1].config.loss_params == {"gamma": 1}
    slices = [shard(cells, k, 4) for k in range(1, 5)]
    assert sorted((c.arm, c.seed) for s in slices for c in s) == sorted((c.arm, c.seed) for c in cells)
    assert [len(s) for s in slices] == [2, 2, 1, 1]
    assert [(c.arm, c.seed) for c in shard(cells, 1, 4)] == [("a", 0), ("a", 2)]  # round robin, stable


def test_a_pretraining_run_and_the_arms_that_need_it_share_a_shard(tmp_path):
    (tmp_path / "p.toml").write_text(GRID + '[pretrain]\nepochs = 1\n[[arms]]\nname = "jig"\ninit = "pretrain"\n')
    cells = grid(load_study(tmp_path / "p.toml", out=tmp_path / "out"))
    assert [c.kind for c in cells[:4]] == ["pretrain", "train", "train", "train"]
    assert cells[3].config.init == str(tmp_path / "out" / "pretrain" / "seed-0" / "checkpoint.pt")
    for k in (1, 2):
        mine = shard(cells, k, 2)
        for seed in (0, 1, 2):
            has = {c.arm for c in mine if c.seed == seed}
            assert ("pretrain" in has) == ("jig" in has)


def test_noise_rule_is_a_paired_t_test_from_three_seeds():
    arm, base = {0: 0.61, 1: 0.64, 2: 0.60}, {0: 0.59, 1: 0.60, 2: 0.585}
    result = paired_comparison(arm, base)
    d = [arm[s] - base[s] for s in range(3)]
    t = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(3))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), df=2))
    assert result["exceeds_noise"] == (result["p_value"] < 0.05)
    two = paired_comparison({0: 0.7, 1: 0.72}, {0: 0.6, 1: 0.61})
    assert two["exceeds_noise"] is True and two["baseline_std"] == pytest.approx(statistics.stdev([0.6, 0.61]))
    assert paired_comparison({0: 0.7}, {0: 0.6})["exceeds_noise"] is None


def test_noise_rule_with_two_seeds_is_twice_the_baseline_std():
    # baseline 0.60, 0.62: std 0.02 / sqrt(2) = 0.01414; 2 x std = 0.0283
    base = {0: 0.60, 1: 0.62}
    below = paired_comparison({0: 0.62, 1: 0.64}, base)  # mean diff 0.02: above 1 x std, below 2 x
    assert below["baseline_std"] == pytest.approx(0.02 / math.sqrt(2))
    assert below["diff_mean"] == pytest.approx(0.02) and below["exceeds_noise"] is False
    above = paired_comparison({0: 0.57, 1: 0.59}, base)  # mean diff -0.03: beyond 2 x std, either sign
    assert above["diff_mean"] == pytest.approx(-0.03) and above["exceeds_noise"] is True
    assert above["rule"] == "|mean diff| > 2 x baseline std" and above["p_value"] is None


def test_noise_rule_with_identical_differences_has_no_t_statistic():
    # every seed 0.01 better: the spread of the differences is 0, the t statistic undefined; p = 0
    same = paired_comparison({0: 0.61, 1: 0.71, 2: 0.51}, {0: 0.60, 1: 0.70, 2: 0.50})
    assert same["p_value"] == 0.0 and same["exceeds_noise"] is True and same["diff_std"] == pytest.approx(0, abs=1e-12)
    tied = paired_comparison({0: 0.6, 1: 0.7, 2: 0.5}, {0: 0.6, 1: 0.7, 2: 0.5})
    assert tied["p_value"] == 1.0 and tied["exceeds_noise"] is False


def test_noise_rule_p_value_is_paired_not_unpaired():
    # large seed-to-seed spread, a small consistent gain: paired t = 0.01 / (0.005 / sqrt 3) = 3.46,
    # p = 0.074 with 2 degrees of freedom; unpaired the gain would drown in the spread (p about 0.9)
    arm, base = {0: 0.515, 1: 0.71, 2: 0.905}, {0: 0.50, 1: 0.70, 2: 0.90}
    result = paired_comparison(arm, base)
    assert result["diff_mean"] == pytest.approx(0.01) and result["diff_std"] == pytest.approx(0.005)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(0.01 / (0.005 / math.sqrt(3)), df=2), rel=1e-9)
    assert result["p_value"] == pytest.approx(0.0742, abs=5e-4) and result["exceeds_noise"] is False
    # its 95% interval: 0.01 +- t(0.975, 2) 0.005 / sqrt 3 = 0.01 +- 4.3027 x 0.002887, so it holds 0 as p > 0.05 says
    assert result["diff_ci95"] == pytest.approx([0.01 - 0.0124207, 0.01 + 0.0124207], abs=1e-6)
    assert paired_comparison({0: 0.61, 1: 0.71, 2: 0.51}, {0: 0.60, 1: 0.70, 2: 0.50})["diff_ci95"] == \
        pytest.approx([0.01, 0.01])
    assert paired_comparison({0: 0.7, 1: 0.72}, {0: 0.6, 1: 0.61})["diff_ci95"] is None  # two seeds: the 2-std rule


def test_recovery_is_the_share_of_the_imbalance_gap_an_arm_wins_back():
    def runs(*accs):
        return {s: {"test_acc": a, "test_balanced_acc": a - 0.1, "per_class_acc": [a]} for s, a in enumerate(accs)}
    # ce 0.50, 0.52; balanced 0.90, 0.92; fix 0.80, 0.84 and a third seed 0.99 that ce and balanced lack
    summaries = {"ce": runs(0.50, 0.52), "balanced": runs(0.90, 0.92), "fix": runs(0.80, 0.84, 0.99),
                 "worse": runs(0.41, 0.43)}
    agg = aggregate_runs(summaries, "ce", "balanced")
    # fix: (0.82 - 0.51) / (0.91 - 0.51) = 0.31 / 0.40 over the shared seeds 0, 1; worse: (0.42 - 0.51) / 0.40
    assert agg["recovery"]["fix"]["test_acc"] == pytest.approx(0.775)
    assert agg["recovery"]["fix"]["test_balanced_acc"] == pytest.approx(0.775)
    assert agg["recovery"]["worse"]["test_acc"] == pytest.approx(-0.225)
    assert set(agg["recovery"]) == {"fix", "worse"} and agg["reference"] == "balanced"
    header, *rows = results_csv(agg).splitlines()
    cells = {row.split(",")[0]: dict(zip(header.split(","), row.split(","))) for row in rows}
    assert cells["fix"]["test_balanced_acc_recovery"] == "0.775" and cells["fix"]["reference_arm"] == "balanced"
    assert cells["ce"]["test_acc_recovery"] == "" and cells["balanced"]["test_acc_recovery"] == ""
    # a reference that does not beat the baseline leaves nothing to recover
    assert aggregate_runs({**summaries, "balanced": runs(0.5, 0.5)}, "ce", "balanced")["recovery"]["fix"] == \
        {"test_acc": None, "test_balanced_acc": None}
    assert aggregate_runs(summaries, "ce")["recovery"] == {}
    # tools/results_table.py: the markdown rows docs/results.md shows, by balanced accuracy
    from tests.conftest import load_tool

    tool = load_tool("results_table")
    lines = tool.table(agg).splitlines()
    assert lines[0].endswith("| recovery | vs ce (paired, balanced acc) |")
    # fix: balanced acc 0.70, 0.74, 0.89 -> mean 0.7767, std 0.1002; paired with ce over seeds 0, 1: +0.30, +0.32
    assert lines[2:] == [
        "| balanced | 2 | 0.8100 ± 0.0141 | - | - | - / - / - | reference | +40.00 ± 0.00 pts |",
        "| fix | 3 | 0.7767 ± 0.1002 | - | - | - / - / - | 77.5% | +31.00 ± 1.41 pts |",
        "| ce | 2 | 0.4100 ± 0.0141 | - | - | - / - / - | - | baseline |",
        "| worse | 2 | 0.3200 ± 0.0141 | - | - | - / - / - | -22.5% | -9.00 ± 0.00 pts |"]


def test_aggregate_has_the_long_tail_figures():
    """ECE from summary.json; many/medium/few and head/middle/tail accuracy from the kept counts and
    per-class recall (runs from before summary.json held them get them too)."""
    kept = [5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5]
    recall = [0.9, 0.9, 0.8, 0.7, 0.7, 0.6, 0.5, 0.4, 0.2, 0.0]
    summaries = {"lt": {s: {"test_acc": 0.6, "test_balanced_acc": 0.6, "per_class_acc": recall, "test_ece": ece,
                            "kept_class_counts": kept} for s, ece in enumerate((0.1, 0.2))},
                 "old": {0: {"test_acc": 0.5, "test_balanced_acc": 0.5, "per_class_acc": [0.5, 0.6]}}}
    agg = aggregate_runs(summaries, None)
    lt = agg["arms"]["lt"]
    assert lt["test_ece"]["mean"] == pytest.approx(0.15) and lt["test_ece"]["std"] == pytest.approx(0.0707107)
    # many: > 100 kept (5000 ... 200: 0.9, 0.9, 0.8, 0.7, 0.7); medium: 100, 50, 20; few: 10, 5
    assert [lt[f"{g}_acc"]["mean"] for g in ("many", "medium", "few")] == pytest.approx([0.8, 0.5, 0.1])
    # head: the 3 largest (0.9, 0.9, 0.8); middle: the next 4 (0.7, 0.7, 0.6, 0.5); tail: (0.4, 0.2, 0.0)
    assert [lt[f"{g}_acc"]["mean"] for g in ("head", "middle", "tail")] == pytest.approx([26 / 30, 0.625, 0.2])
    assert all(agg["arms"]["old"][m]["mean"] is None for m in ("test_ece", "many_acc", "tail_acc"))
    header, row, _ = results_csv(agg).splitlines()
    cells = dict(zip(header.split(","), row.split(",")))
    assert cells["test_ece_mean"] == "0.15" and cells["few_acc_mean"] == "0.1" and cells["head_acc_std"] == "0"
    assert header.split(",")[14] == "baseline_arm"  # the earlier columns keep their places


def test_mean_std_is_the_sample_std():
    # 0.5, 0.7, 0.9: mean 0.7, squared deviations 0.04 + 0 + 0.04 over n - 1 = 2: std 0.2 (not 0.163)
    assert mean_std([0.5, 0.7, 0.9]) == {"mean": pytest.approx(0.7), "std": pytest.approx(0.2), "n": 3}
    assert mean_std([0.4]) == {"mean": 0.4, "std": None, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}


# -- on tiny synthetic data ------------------------------------------------------------------------

TINY = """
name = "tiny"
seeds = [0]
[defaults]
recipe = "seed"
epochs = 1
val_size = 6
threads = 1
[[arms]]
name = "imbalanced"
imbalance = "step:2"
"""


def _run(tmp_path, text, *extra):
    (tmp_path / "s.toml").write_text(text)
    data = os.environ.get("TINY_DATA")
    return main(["study", str(tmp_path / "s.toml"), "--data", data, "--out", str(tmp_path / "out"), "--quiet", *extra])


@pytest.fixture
def tiny_data(tiny_folder, tmp_path, monkeypatch):
    root = tiny_folder(tmp_path / "data", classes=3, per_class=12, size=16)
    monkeypatch.setenv("TINY_DATA", str(root))
    return root


def test_a_shard_runs_only_its_slice(tmp_path, tiny_data):
    text = TINY + '[[arms]]\nname = "cb"\nimbalance = "step:2"\nloss = "cb"\n'
    assert _run(tmp_path, text, "--shard", "2/2") == 0
    assert not (tmp_path / "out" / "runs" / "imbalanced").exists()
    assert (tmp_path / "out" / "runs" / "cb" / "seed-0" / "summary.json").exists()
    assert not (tmp_path / "out" / "aggregate.json").exists()  # the other shard has not run


def test_workers_run_the_whole_grid_in_parallel_processes(tmp_path, tiny_data):
    text = TINY + '[[arms]]\nname = "cb"\nimbalance = "step:2"\nloss = "cb"\n'
    assert _run(tmp_path, text, "--workers", "2") == 0
    for arm in ("imbalanced", "cb"):
        summary = json.loads((tmp_path / "out" / "runs" / arm / "seed-0" / "summary.json").read_text())
        assert summary["finished"] and summary["threads"] == 1  # the study file's threads = 1 wins
    assert (tmp_path / "out" / "aggregate.json").exists()
    assert _run(tmp_path, text, "--workers", "2", "--shard", "1/2") == 2


def test_a_stopped_study_says_to_rerun_the_study_command_not_resume(tmp_path, tiny_data, capsys, monkeypatch):
    import pickle

    import longtail.run
    from longtail.errors import TrainingInterrupted

    def stopped(cfg, dataset):  # what the engine raises on SIGTERM, after writing its checkpoint
        raise TrainingInterrupted("stopped by SIGTERM at epoch 3, step 7")

    monkeypatch.setattr(longtail.run, "run", stopped)
    assert _run(tmp_path, TINY) == 130
    err = capsys.readouterr().err
    assert err == ("longtail: stopped: imbalanced seed 0: stopped by SIGTERM at epoch 3, step 7; checkpoint written, "
                   "rerun the same study command to continue (a study resumes its runs itself)\n")
    # --workers hands the exception back through a process pool: it must arrive whole
    e = pickle.loads(pickle.dumps(TrainingInterrupted("stopped by SIGINT at epoch 1, step 2", "how")))
    assert str(e) == "stopped by SIGINT at epoch 1, step 2; checkpoint written, how"


def test_a_changed_study_does_not_reuse_old_runs(tmp_path, tiny_data, capsys):
    assert _run(tmp_path, TINY) == 0
    assert _run(tmp_path, TINY.replace("epochs = 1", "epochs = 1\nlr = 0.01")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made with lr=0.001, now lr=0.01" in err, err


def test_a_rerun_with_other_data_is_refused_before_anything_changes(tmp_path, tiny_data, tiny_folder, capsys):
    assert _run(tmp_path, TINY) == 0
    study_json = (tmp_path / "out" / "study.json").read_text()
    other = tiny_folder(tmp_path / "other", classes=3, per_class=12, size=16, seed=9)
    (tmp_path / "s.toml").write_text(TINY)
    code = main(["study", str(tmp_path / "s.toml"), "--data", str(other), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "made with other data" in err, err
    assert (tmp_path / "out" / "study.json").read_text() == study_json


def test_a_profile_that_fails_under_limit_train_stops_the_study_before_any_run(tmp_path, tiny_data, capsys):
    # 36 training images, 6 held out for validation: "counts:8,8,8" fits them, not limit_train = 9 (3 a class)
    text = TINY.replace('imbalance = "step:2"', 'imbalance = "step:2"\n[[arms]]\nname = "late"\n'
                        'limit_train = 9\nimbalance = "counts:8,8,8"')
    assert _run(tmp_path, text) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "late seed 0" in err and "class 0 has only 3" in err, err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pretraining_runs_once_per_seed_and_initialises_its_arm(tmp_path, tiny_folder, monkeypatch, workers):
    monkeypatch.setenv("TINY_DATA", str(tiny_folder(tmp_path / "data", classes=2, per_class=10, size=32)))
    text = TINY.replace('imbalance = "step:2"', 'init = "pretrain"') + "[pretrain]\nepochs = 1\nval_size = 4\n"
    # with workers, the arm initialised from the pretraining must wait for it
    assert _run(tmp_path, text, "--workers", workers) == 0
    assert (tmp_path / "out" / "pretrain" / "seed-0" / "summary.json").exists()
    summary = json.loads((tmp_path / "out" / "runs" / "imbalanced" / "seed-0" / "summary.json").read_text())
    assert "transfer" in summary


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stage_arm_starts_from_the_same_seeds_run_of_its_source_arm(tmp_path, tiny_data, workers):
    # the decoupled classifier stage as a study arm: init = "arm:NAME" is that seed's finished run of NAME
    text = TINY.replace("seeds = [0]", "seeds = [0, 1]") + (
        '[[arms]]\nname = "crt"\nbaseline = "imbalanced"\ninit = "arm:imbalanced"\nstage = "crt"\n'
        'recipe = "decouple"\nepochs = 1\n')
    assert _run(tmp_path, text, "--workers", workers) == 0  # with workers, the stage waits for its source
    for seed in (0, 1):
        source = tmp_path / "out" / "runs" / "imbalanced" / f"seed-{seed}"
        summary = json.loads((tmp_path / "out" / "runs" / "crt" / f"seed-{seed}" / "summary.json").read_text())
        assert summary["stage"]["method"] == "crt"
        assert Path(summary["stage"]["source"]).resolve() == source.resolve()
        assert summary["kept_indices_hash"] == json.loads((source / "summary.json").read_text())["kept_indices_hash"]
    aggregate = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert "crt" in aggregate["arms"]


def test_a_reference_arm_without_imbalance_gives_each_arms_recovery(tmp_path, tiny_data):
    text = 'reference = "balanced"\n' + TINY + (
        '[[arms]]\nname = "weighted"\nimbalance = "step:2"\nloss = "weighted"\n'
        '[[arms]]\nname = "balanced"\nimbalance = "none"\n')
    assert _run(tmp_path, text) == 0
    out = tmp_path / "out"
    runs = {arm: json.loads((out / "runs" / arm / "seed-0" / "summary.json").read_text())
            for arm in ("imbalanced", "weighted", "balanced")}
    assert sum(runs["balanced"]["kept_class_counts"]) > sum(runs["imbalanced"]["kept_class_counts"])
    assert len(set(runs["balanced"]["kept_class_counts"])) == 1  # tiny_data is balanced; "none" keeps all
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["reference"] == "balanced" and json.loads((out / "study.json").read_text())["reference"] == "balanced"
    base, ref, arm = (runs[a]["test_balanced_acc"] for a in ("imbalanced", "balanced", "weighted"))
    want = (arm - base) / (ref - base) if ref > base else None
    assert aggregate["recovery"]["weighted"]["test_balanced_acc"] == (pytest.approx(want) if want is not None else None)
    assert set(aggregate["recovery"]) == {"weighted"}
    # runs.csv: one row per run, its figures as summary.json has them
    import csv
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [(r["arm"], r["seed"]) for r in rows] == [("imbalanced", "0"), ("weighted", "0"), ("balanced", "0")]
    for row in rows:
        summary = runs[row["arm"]]
        assert float(row["test_balanced_acc"]) == pytest.approx(summary["test_balanced_acc"])
        assert float(row["test_ece"]) == pytest.approx(summary["test_ece"])
        assert row["kept_indices_hash"] == summary["kept_indices_hash"] and int(row["best_epoch"]) == summary["best_epoch"]


def test_arms_runs_only_those_arms_and_what_they_start_from(tmp_path, tiny_data, capsys):
    text = TINY + ('[[arms]]\nname = "weighted"\nimbalance = "step:2"\nloss = "weighted"\n'
                   '[[arms]]\nname = "crt"\ninit = "arm:imbalanced"\nstage = "crt"\nrecipe = "decouple"\nepochs = 1\n')
    runs = tmp_path / "out" / "runs"
    assert _run(tmp_path, text, "--arms", "crt") == 0
    assert sorted(p.name for p in runs.iterdir()) == ["crt", "imbalanced"]  # crt's source ran first
    out = capsys.readouterr().out
    assert "1 run(s) of other arms not run" in out
    aggregate = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert set(aggregate["arms"]) == {"imbalanced", "crt"} and aggregate["missing"] == ["runs/weighted/seed-0"]
    assert _run(tmp_path, text, "--arms", "weighted", "--workers", "2") == 0
    aggregate = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert set(aggregate["arms"]) == {"imbalanced", "crt", "weighted"} and aggregate["missing"] == []
    capsys.readouterr()
    assert _run(tmp_path, text, "--arms", "weighted,nope") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--arms: 'nope' is not an arm of" in err and "(imbalanced, weighted, crt)" in err
    assert _run(tmp_path, text, "--arms", "crt", "--collect") == 2
    assert "--arms chooses what to run and --collect runs nothing" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    (TINY.replace("imbalance =", "imbalace ="), "unknown key 'imbalace' in arm 'imbalanced'"),
    (TINY.replace("seeds = [0]", "seed = [0]"), "unknown key 'seed' in"),
    (TINY.replace("[defaults]", "[defaults]\nseed = 3"), "key 'seed' in \\[defaults\\]"),
    (TINY.replace('"step:2"', '"step:1"'), "ratio must be greater than 1"),
    (TINY.replace('"step:2"', '"counts:5,5,50"'), "class 2 has only"),
    (TINY + 'loss = "hinge"\n', "unknown loss 'hinge' \\(loss in arm 'imbalanced'"),
    (TINY + 'rebalance = "smote"\n', "unknown rebalance method 'smote'"),
    (TINY + 'loss = "focal"\nloss_params = {gama = 2}\n', "no parameter 'gama'"),
    (TINY + '[[arms]]\nname = "imbalanced"\n', "two arms"),
    (TINY + '[[arms]]\nname = "a/b"\n', "must be a name"),
    ('baseline = "nope"\n' + TINY, "baseline 'nope'"),
    ('reference = "nope"\n' + TINY, "reference 'nope' in .* is not one of its arms other than the baseline"),
    ('reference = "imbalanced"\n' + TINY, "reference 'imbalanced' in .* other than the baseline"),
    (TINY.replace('"step:2"', '"none:2"'), "imbalance 'none' takes no arguments"),
    (TINY + 'init = "pretrain"\n', "no \\[pretrain\\] table"),
    (TINY + 'init = "arm:imbalanced"\n', "names itself"),
    (TINY + 'init = "arm:later"\n[[arms]]\nname = "later"\n', "names an arm after it"),
    (TINY + 'init = "arm:nope"\n', "names no arm"),
    (TINY.replace("epochs = 1", "epochs = 0"), "epochs in .* must be >= 1"),
    ("name = 'x'\n", "at least one \\[\\[arms\\]\\]"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, tiny_data, capsys, text, message):
    import re

    assert _run(tmp_path, text) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("longtail: error:") and re.search(message, err), err
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran


def test_bad_shard_and_seeds_are_one_line_errors(tmp_path, tiny_data, capsys):
    assert _run(tmp_path, TINY, "--shard", "3/2") == 2
    assert "--shard must look like K/N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse's own check ends the process
        _run(tmp_path, TINY, "--seeds", "0,x")
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "comma-separated integers" in err


def test_load_study_names_the_cli_overrides(tmp_path):
    (tmp_path / "s.toml").write_text(TINY.replace("[defaults]", '[defaults]\ndata = "from-file"'))
    study = load_study(tmp_path / "s.toml")
    assert study.data == "from-file" and study.out == Path("runs") / "tiny" and study.seeds == [0]
    study = load_study(tmp_path / "s.toml", data="from-cli", seeds=[4, 5], out=tmp_path / "o")
    assert study.data == "from-cli" and study.seeds == [4, 5] and study.out == tmp_path / "o"
    with pytest.raises(LongtailError, match="repeat a seed"):
        load_study(tmp_path / "s.toml", seeds=[1, 1])


@pytest.mark.parametrize("name, arms", [
    ("seed-imbalance", ["balanced", "imbalanced", "copy", "aug", "loss", "aug+loss", "balanced-valid"]),
    ("seed-imbalance-fast", ["balanced", "imbalanced", "copy", "aug", "loss", "aug+loss"]),
    ("long-tail", None), ("long-tail-10", None),
])
def test_the_preset_studies_are_valid(tmp_path, name, arms):
    from longtail.study import check_cell

    study = load_study(Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml", out=tmp_path)
    cells = grid(study)
    fifty_thousand = SimpleNamespace(num_classes=10, train_labels=torch.arange(10).repeat(5000), fingerprint="f")
    assert study.seeds == [0, 1, 2] and all(c.config.epochs == 20 for c in cells)
    if arms:
        assert [a for a, _ in study.arms] == arms and study.baseline == "imbalanced"
        assert {c.config.recipe for c in cells} == {"fast" if name.endswith("fast") else "seed"}
    else:
        assert study.baseline == "ce" and len(study.arms) >= 10
        assert {c.config.imbalance for c in cells} == {"exponential:100" if name == "long-tail" else "exponential:10"}
    for cell in cells:
        check_cell(cell, fifty_thousand)


def test_an_arm_can_name_its_own_baseline(tmp_path):
    """Per-arm `baseline` pairs each arm with the arm it should be compared with (jigsaw-init-10pct
    with random-init-10pct, not with the full-label random-init); the report shows the pairing."""
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\nseeds = [0, 1, 2]\nbaseline = "a"\n[[arms]]\nname = "a"\n[[arms]]\nname = "b"\n'
                    '[[arms]]\nname = "c"\n[[arms]]\nname = "d"\nbaseline = "c"\n')
    study = load_study(toml, data="x")
    assert study.baselines == {"b": "a", "c": "a", "d": "c"}
    acc = {"a": [0.70, 0.71, 0.72], "b": [0.71, 0.73, 0.72], "c": [0.60, 0.61, 0.59], "d": [0.62, 0.64, 0.63]}
    summaries = {arm: {s: {"test_acc": v[s], "test_balanced_acc": v[s], "per_class_acc": [v[s]]}
                       for s in range(3)} for arm, v in acc.items()}
    agg = aggregate_runs(summaries, study.baselines)
    assert agg["baselines"] == study.baselines and agg["baseline"] is None
    d = agg["paired"]["d"]["test_acc"]
    assert d["diff_mean"] == pytest.approx(0.03) and d["diff_std"] == pytest.approx(statistics.stdev([0.02, 0.03, 0.04]))
    assert agg["paired"]["c"]["test_acc"]["diff_mean"] == pytest.approx(-0.11)
    assert "a" not in agg["paired"]
    assert results_csv(agg).splitlines()[4].split(",")[1 + 1 + 12] == "c"  # d's baseline_arm column


@pytest.mark.parametrize("arm_baseline", ['"nope"', '"d"'])
def test_a_bad_arm_baseline_is_one_line(tmp_path, arm_baseline):
    toml = tmp_path / "s.toml"
    toml.write_text(f'name = "s"\n[[arms]]\nname = "c"\n[[arms]]\nname = "d"\nbaseline = {arm_baseline}\n')
    with pytest.raises(LongtailError, match="baseline .* of arm 'd'"):
        load_study(toml, data="x")


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_preset_in_configs_loads_and_every_cell_checks(tmp_path, path):
    from longtail.study import check_cell

    study = load_study(path, out=tmp_path)
    cells = grid(study)
    assert cells and len({c.run_dir for c in cells}) == len(cells)
    fifty_thousand = SimpleNamespace(num_classes=10, train_labels=torch.arange(10).repeat(5000), fingerprint="f")
    for cell in cells:
        check_cell(cell, fifty_thousand)
