"""The report: figures and a self-contained, escaped report.html from a run store (synthetic run
folders written here, so every case is quick and exact)."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from longtail.cli import main
from longtail.report import collect_report_data, write_report
from longtail.report.figures import ema

CLASSES = ["cat", "dog", "eel"]


def fake_run(path: Path, *, accs=(0.4, 0.5), finished=True, fingerprint="a" * 64, classes=CLASSES,
             config=None, kept=(10, 100, 100)):
    """A run folder shaped like runner.run_training's: config.json, metrics.jsonl, summary.json."""
    path.mkdir(parents=True)
    epochs = len(accs)
    (path / "config.json").write_text(json.dumps({"epochs": epochs, "recipe": "seed", "seed": 0, **(config or {})}))
    rows = [{"epoch": e + 1, "lr": 0.1, "train_loss": 2.0 - a, "seconds": 1.0, "images_per_s": 100.0,
             "val_loss": 1.5 - a, "val_acc": a, "val_balanced_acc": a, "test_acc": a - 0.01}
            for e, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        acc = accs[-1]
        summary = {"finished": True, "test_acc": acc, "test_balanced_acc": acc - 0.02, "test_macro_f1": acc - 0.05,
                   "per_class_acc": [acc - 0.2, acc + 0.1, acc + 0.1][:len(classes)],
                   "confusion": [[5 if i == j else 1 for j in range(len(classes))] for i in range(len(classes))],
                   "best_test_acc_over_epochs": max(accs), "classes": classes, "kept_class_counts": list(kept),
                   "dataset": {"name": "fake", "fingerprint": fingerprint}}
        (path / "summary.json").write_text(json.dumps(summary))


PLAIN = {"imbalance": None, "rebalance": "none", "loss": "ce", "init": None}
SETTINGS = {  # the seed report's arms, as runner's config.json records them
    "imbalanced": {**PLAIN, "imbalance": "step:10"},
    "copy": {**PLAIN, "imbalance": "step:10", "rebalance": "copy"},
    "aug+loss": {**PLAIN, "imbalance": "step:10", "rebalance": "aug-only", "loss": "weighted"},
    "jigsaw-init": {**PLAIN, "init": "pre/checkpoint.pt"},
}


def fake_study(root: Path, arms: dict[str, list[float]], study_json=True, settings=None):
    for arm, finals in arms.items():
        for seed, acc in enumerate(finals):
            config = {**(settings or SETTINGS).get(arm, PLAIN), "seed": seed}
            fake_run(root / "runs" / arm / f"seed-{seed}", accs=(acc - 0.1, acc), config=config)
    if study_json:
        (root / "study.json").write_text(json.dumps({"name": "fake", "arms": list(arms), "baseline": "imbalanced"}))
    return root


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]


def test_study_report_has_tables_figures_and_the_seed_numbers(tmp_path):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7], "aug+loss": [0.6, 0.7], "copy": [0.55, 0.65]})
    html = write_report(root).read_text()
    assert "0.6000 &plusmn; 0.1414" in html  # imbalanced: mean and sample std of 0.5, 0.7
    assert "0.6060" in html and "0.5924" in html and "JPEG re-encoding" in html  # the seed report's numbers
    assert "exponential moving average" in html and "paired t-test" in html
    figures = sorted(p.name for p in (root / "figures").iterdir())
    for stem in ("results", "val-loss", "val-acc", "per-class-acc", "confusion", "arm-00-imbalanced"):
        assert f"{stem}.svg" in figures and f"{stem}.pdf" in figures
    assert (root / "figures" / "results.pdf").read_bytes().startswith(b"%PDF")
    images = _images(html)
    assert len(images) == html.count("<img ") == len(figures) // 2
    for svg in images:
        ET.fromstring(svg)  # well-formed SVG


def test_seed_numbers_appear_only_beside_the_seeds_own_setting(tmp_path):
    other = {"copy": {**PLAIN, "imbalance": "exponential:100", "rebalance": "copy"}}
    html = write_report(fake_study(tmp_path / "s", {"copy": [0.5, 0.6]}, settings=other)).read_text()
    assert "0.5820" not in html


def test_the_page_is_self_contained(tmp_path):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.6]})
    html = write_report(root).read_text()
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith("data:image/svg+xml;base64,") or (root / attr).is_file(), attr


def test_strings_from_configs_class_names_and_folders_are_escaped(tmp_path):
    root = tmp_path / "s"
    evil_classes = ["<script>alert(1)</script>", "a&b", "q\"uote$x$"]
    fake_run(root / "runs" / "x<y>&\"z" / "seed-0", classes=evil_classes, config={"imbalance": "<b>bold</b>"})
    html = write_report(root).read_text()
    assert "x&lt;y&gt;&amp;&quot;z" in html and "x<y>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>" not in html
    assert "<script" not in html.lower()
    for svg in _images(html):
        ET.fromstring(svg)
        assert b"<script" not in svg.lower()


def test_a_partial_run_is_drawn_and_marked_but_left_out_of_the_statistics(tmp_path):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]})
    fake_run(root / "runs" / "imbalanced" / "seed-2", accs=(0.1,), finished=False, config={"epochs": 5})
    data = collect_report_data(root)
    assert [r.partial for r in data.runs] == [False, False, True]
    assert data.aggregate["arms"]["imbalanced"]["n_seeds"] == 2
    notes = []
    html = write_report(root, note=notes.append).read_text()
    assert notes == ["1 run(s) without summary.json drawn as partial: imbalanced seed 2"]
    assert "partial: 1 of 5 epochs" in html and "imbalanced seed 2" in html and "1 partial run(s)" in html


def test_a_single_run_folder_gets_its_own_report(tmp_path):
    fake_run(tmp_path / "run")
    html = write_report(tmp_path / "run").read_text()
    assert "Run folder" in html and (tmp_path / "run" / "figures" / "val-loss.svg").exists()
    assert "Paired comparison" not in html


def fake_pretraining(path: Path) -> None:
    """A pretraining run folder: config with a task, metrics.jsonl rows of the jigsaw task."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"task": "jigsaw", "epochs": 3, "seed": 0}))
    keys = ("val_position_acc_argmax", "val_puzzle_acc_argmax", "val_position_acc_hungarian",
            "val_puzzle_acc_hungarian", "val_confidence")
    rows = [{"epoch": e, "lr": 0.001, "train_loss": 0.5 / e, "seconds": 1, "images_per_s": 10, "val_loss": 0.6 / e,
             **{k: 0.2 * e for k in keys}} for e in (1, 2, 3)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pretext_curves_are_drawn_from_pretraining_runs(tmp_path):
    root = fake_study(tmp_path / "s", {"jigsaw-init": [0.7, 0.72]})
    fake_pretraining(root / "pretrain" / "seed-0")
    html = write_report(root).read_text()
    assert (root / "figures" / "pretext.svg").exists() and "Jigsaw pretraining" in html
    assert "0.7429" in html  # the seed's Homework 03 figure beside the jigsaw-init arm


def test_a_pretraining_run_folder_gets_its_pretext_curves(tmp_path):
    fake_pretraining(tmp_path / "pre")
    html = write_report(tmp_path / "pre").read_text()
    assert (tmp_path / "pre" / "figures" / "pretext.pdf").exists() and html.count("<img ") == 1
    assert "partial" in html  # no summary.json yet


def test_smoothing_is_an_exponential_moving_average():
    assert ema([1.0, 0.0, 0.0, 1.0]) == pytest.approx([1.0, 0.6, 0.36, 0.616])


@pytest.mark.parametrize("make, message", [
    (lambda root: root.mkdir(), "no runs found"),
    (lambda root: (root / "runs" / "arm" / "seed-0").mkdir(parents=True), "no runs found"),
    (lambda root: (fake_run(root / "runs" / "a" / "seed-0"), fake_run(root / "runs" / "b" / "seed-0", fingerprint="b" * 64)),
     "mixes runs of different datasets"),
    (lambda root: (fake_run(root), (root / "metrics.jsonl").write_text("{not json\n")), "not valid JSON"),
    (lambda root: None, "is not a folder"),
])
def test_bad_folders_are_one_line_errors(tmp_path, capsys, make, message):
    root = tmp_path / "r"
    make(root)
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
