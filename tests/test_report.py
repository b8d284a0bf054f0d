"""The report: figures and a self-contained, escaped report.html from a run store. Most cases use
synthetic run folders written here (quick and exact); the seed reports' figures that need a model
(the solved puzzles, the layer map) come from a tiny real study on a synthetic image folder."""

from __future__ import annotations

import base64
import json
import re
import shutil
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest

from longtail.cli import main
from longtail.errors import LongtailError
from longtail.report import collect_report_data, write_report
from longtail.report.figures import ema

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_run(path: Path, *, accs=(0.4, 0.5), finished=True, fingerprint="a" * 64, classes=CLASSES,
             config=None, kept=None):
    """A run folder shaped like longtail.run's: config.json, metrics.jsonl, summary.json."""
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
                   "per_class_acc": [acc - 0.2] + [acc + 0.1] * (len(classes) - 1),
                   "confusion": [[5 if i == j else 1 for j in range(len(classes))] for i in range(len(classes))],
                   "best_test_acc_over_epochs": max(accs), "classes": classes,
                   "kept_class_counts": list(kept or [10] + [100] * (len(classes) - 1)),
                   "dataset": {"name": "fake", "fingerprint": fingerprint}}
        (path / "summary.json").write_text(json.dumps(summary))


PLAIN = {"imbalance": None, "rebalance": "none", "loss": "ce", "init": None}
SETTINGS = {  # the seed report's arms, as a run's config.json records them
    "imbalanced": {**PLAIN, "imbalance": "step:10"},
    "copy": {**PLAIN, "imbalance": "step:10", "rebalance": "copy"},
    "aug+loss": {**PLAIN, "imbalance": "step:10", "rebalance": "aug-only", "loss": "weighted"},
    "jigsaw-init": {**PLAIN, "init": "pre/checkpoint.pt"},
    "jigsaw-convs": {**PLAIN, "init": "pre/checkpoint.pt", "transfer_layers": ["conv1", "conv2", "conv3"]},
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


def test_seed_numbers_appear_only_beside_the_seeds_own_setting_on_cifar10(tmp_path):
    other = {"copy": {**PLAIN, "imbalance": "exponential:100", "rebalance": "copy"}}
    html = write_report(fake_study(tmp_path / "s", {"copy": [0.5, 0.6]}, settings=other)).read_text()
    assert "0.5820" not in html
    root = tmp_path / "other-data"
    fake_run(root / "runs" / "copy" / "seed-0", classes=["a", "b"], config=SETTINGS["copy"])
    assert "0.5820" not in write_report(root).read_text()


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
    assert (root / "figures" / "pretext.svg").exists() and "Homework 03, figure 3" in html
    assert "0.7429" in html  # the seed's Homework 03 figure beside the jigsaw-init arm
    assert "0.7918" in html and "0.6593" in html and "0.7309" in html  # its jigsaw figures
    assert "no pretraining run with a checkpoint.pt" in html.lower()


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


# -- a tiny real study: pretraining, four arms, two seeds (a few seconds) -------------------------

# HTML in class names and in the data path (a folder may be named "d<script>..."; its "/" makes two)
EVIL_CLASSES = ["<script>window.pwned=1<", "a&b \"q\" 'x'", "<img src=x onerror=window.pwned=1>"]
EVIL_PATH = "d<script>window.pwned=1</script>"
TINY_STUDY = """
name = "tiny"
seeds = [0, 1]
[defaults]
epochs = 2
threads = 1
val_size = 12
[pretrain]
epochs = 2
val_size = 12
threads = 1
[[arms]]
name = "balanced"
[[arms]]
name = "imbalanced"
imbalance = "step:4:0"
[[arms]]
name = "balanced-valid"
padding = "valid"
[[arms]]
name = "jigsaw-init"
init = "pretrain"
"""
TINY_ARMS = ["balanced", "imbalanced", "balanced-valid", "jigsaw-init"]


def make_tiny_study(root: Path) -> tuple[Path, list[str]]:
    """Run TINY_STUDY on 3 classes x 24 synthetic 32x32 images; returns (study folder, arms)."""
    from conftest import make_image_folder
    from longtail.study import load_study, run_study

    data = make_image_folder(root / EVIL_PATH / "data", per_class=24, size=32, test_per_class=6,
                             class_names=EVIL_CLASSES)
    (root / "tiny.toml").write_text(TINY_STUDY)
    _, missing = run_study(load_study(root / "tiny.toml", data=str(data), out=root / "out", quiet=True),
                           log=lambda line: None)
    assert missing == []
    return root / "out", TINY_ARMS


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out, arms = make_tiny_study(tmp_path_factory.mktemp("tiny"))
    return out, arms, write_report(out).read_text()


def _section(html: str, heading: str) -> str:
    """The HTML from the heading that contains ``heading`` to the next heading of any level."""
    start = html.index(heading)
    return html[start:re.search(r"<h[123]>", html[start + 1:]).start() + start + 1]


def test_the_seed_reports_figures_and_tables_are_all_there(tiny_study):
    out, arms, html = tiny_study
    assert "Homework 02, figure 1: the balanced training set (arm balanced)" in html
    assert "Homework 02, figure 2: the imbalanced training set (arm imbalanced)" in html
    for heading in ("Homework 02, table 2", "Homework 02, figures 3 and 4", "Homework 02, section 1",
                    "Homework 03, figure 1", "Homework 03, figure 3", "Homework 03, figure 4", "Homework 03, table 2"):
        assert heading in html, heading
    table2 = _section(html, "Homework 02, table 2")
    assert table2.count("<tr>") == 1 + len(arms)  # header + a row per arm
    assert "0.7259" not in table2  # the seed's numbers are CIFAR-10's; these are 3 synthetic classes
    assert "4-epoch moving average" in _section(html, "Homework 02, figures 3 and 4")
    padding = _section(html, "Homework 02, section 1")
    assert "<code>balanced</code>" in padding and "<code>balanced-valid</code>" in padding and "better" in padding
    for stem in ("puzzles", "pretext", "init-curves", "arm-00-balanced", "arm-01-imbalanced", "val-acc"):
        assert (out / "figures" / f"{stem}.svg").is_file() and (out / "figures" / f"{stem}.pdf").is_file()
    assert html.count("<img ") == len(list((out / "figures").glob("*.svg")))
    assert "balanced</td><td>jigsaw-init</td>" in _section(html, "Homework 03, figure 4")
    layer_map = _section(html, "Homework 03, table 2")
    for row in ("<td>conv1</td><td>32 x 3 x 3 x 3</td><td>transferred</td><td>conv1</td>",
                "<td>bn</td><td>64</td><td>not transferred</td>", "<td>fc2</td><td>3 x 64</td><td>not transferred</td>"):
        assert row in layer_map, row


def test_the_puzzle_examples_use_the_pretrained_net(tiny_study):
    import torch

    from longtail.report.collect import collect_report_data
    from longtail.report.puzzles import pretraining_run, solve_examples

    out, _, _ = tiny_study
    examples = solve_examples(pretraining_run(collect_report_data(out).pretrain))
    n, k = examples.true.shape
    assert n == 6 and k == 4 and examples.labels[:3] == sorted(EVIL_CLASSES)  # one image of each class first
    for method, positions in examples.decoded.items():
        assert positions.shape == (n, k) and positions.min() >= 0 and positions.max() < k, method
    assert all(sorted(p) == list(range(k)) for p in examples.decoded["hungarian"].tolist())  # permutations
    # the shown tiles are the images' tiles, shuffled: put back by the true positions they are the image
    from longtail.jigsaw import reassemble

    back = reassemble(examples.tiles, torch.nn.functional.one_hot(examples.true, k).float(), 2)
    assert torch.equal(back, examples.images)


def _point_pretraining_at(study: Path, copy: Path, spec: str) -> None:
    shutil.copytree(study, copy)
    for config in (copy / "pretrain").glob("seed-*/config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "data": spec}))


def test_puzzles_are_skipped_with_a_note_when_the_data_is_gone(tiny_study, tmp_path):
    out, _, _ = tiny_study
    _point_pretraining_at(out, tmp_path / "copy", str(tmp_path / "gone"))
    notes = []
    html = write_report(tmp_path / "copy", note=notes.append).read_text()
    expected = f"data path not found: {tmp_path / 'gone'}"
    assert len(notes) == 1 and notes[0].startswith(f"puzzle examples skipped: {expected}")
    assert f"Puzzle examples skipped: {escape(expected)}" in html
    assert not (tmp_path / "copy" / "figures" / "puzzles.svg").exists()  # nor the one an earlier report drew
    assert "Homework 03, figure 3" in html  # the rest of the section is there


@pytest.mark.parametrize("data, message", [
    ("cifar10", "CIFAR-10 is not on this machine"),  # and nothing is downloaded
    ("other", "the data at {tmp}/other is not what the run was trained on"),
])
def test_puzzle_examples_need_the_very_data_of_the_run(tiny_study, tmp_path, tiny_folder, data, message):
    from longtail.report.collect import collect_report_data
    from longtail.report.puzzles import pretraining_run, solve_examples

    out, _, _ = tiny_study
    tiny_folder(tmp_path / "other", classes=3, per_class=4, size=32)
    _point_pretraining_at(out, tmp_path / "copy", data if data == "cifar10" else str(tmp_path / data))
    with pytest.raises(LongtailError, match=re.escape(message.format(tmp=tmp_path))):
        solve_examples(pretraining_run(collect_report_data(tmp_path / "copy").pretrain))


def test_a_run_without_any_epoch_yet_is_one_note_and_no_warning(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 20, "seed": 0}))
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "longtail: note: 1 run(s) without summary.json drawn as partial: run seed 0\n"
    assert "partial: 0 of 20 epochs" in (run / "report.html").read_text()


def test_a_run_in_progress_on_other_data_is_not_mixed_in(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]})
    fake_run(root / "runs" / "imbalanced" / "seed-2", finished=False,
             config={"dataset_fingerprint": "b" * 64})
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mixes runs of different datasets" in err and "imbalanced seed 2" in err


def test_paired_table_pairs_each_arm_with_its_own_baseline(tmp_path):
    root = fake_study(tmp_path / "s", {"random-init": [0.70, 0.72, 0.71], "random-init-10pct": [0.60, 0.58, 0.59],
                                      "jigsaw-init-10pct": [0.62, 0.61, 0.63]})
    (root / "study.json").write_text(json.dumps({
        "name": "fake", "arms": ["random-init", "random-init-10pct", "jigsaw-init-10pct"], "baseline": "random-init",
        "baselines": {"random-init-10pct": "random-init", "jigsaw-init-10pct": "random-init-10pct"}}))
    html = write_report(root).read_text()
    table = html[html.index("<h2>Paired comparison with the baseline arms (random-init, random-init-10pct)"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>\d+</td><td>([^<]*)</td>", table)
    assert ("jigsaw-init-10pct", "random-init-10pct", "test acc", "0.0300") in rows
    assert ("random-init-10pct", "random-init", "test acc", "-0.1200") in rows


def test_arms_differing_only_in_transfer_options_pair_with_random_init(tmp_path):
    from longtail.report.collect import collect_report_data, init_pairs

    root = fake_study(tmp_path / "s", {"random-init": [0.70, 0.72], "jigsaw-init": [0.71, 0.72],
                                      "jigsaw-convs": [0.72, 0.73], "imbalanced": [0.6, 0.61]})
    assert init_pairs(collect_report_data(root)) == [("random-init", "jigsaw-init"), ("random-init", "jigsaw-convs")]
