"""The report: figures and a self-contained, escaped report.html from a run store. Most cases use
synthetic run folders written here (quick and exact); the seed reports' figures that need a model
(the solved puzzles, the layer map) come from a tiny real study on a synthetic image folder."""

from __future__ import annotations

import base64
import json
import os
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


# five confidence bins of 40 test images: ECE = (|1 - 1.2| + |3 - 3| + |6 - 7| + |16 - 18|) / 40 = 0.08
BINS = {"count": [0, 4, 6, 10, 20], "confidence_sum": [0.0, 1.2, 3.0, 7.0, 18.0], "correct": [0, 1, 3, 6, 16]}


def fake_run(path: Path, *, accs=(0.4, 0.5), finished=True, fingerprint="a" * 64, classes=CLASSES,
             config=None, kept=None, summary=None):
    """A run folder shaped like longtail.run's: config.json, metrics.jsonl, summary.json (with
    ``summary``'s entries added or replaced)."""
    path.mkdir(parents=True)
    epochs = len(accs)
    (path / "config.json").write_text(json.dumps({"epochs": epochs, "recipe": "seed", "seed": 0, **(config or {})}))
    rows = [{"epoch": e + 1, "lr": 0.1, "train_loss": 2.0 - a, "seconds": 1.0, "images_per_s": 100.0,
             "val_loss": 1.5 - a, "val_acc": a, "val_balanced_acc": a, "test_acc": a - 0.01}
            for e, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        acc, extra = accs[-1], summary
        summary = {"finished": True, "test_acc": acc, "test_balanced_acc": acc - 0.02, "test_macro_f1": acc - 0.05,
                   "per_class_acc": [acc - 0.2] + [acc + 0.1] * (len(classes) - 1),
                   "confusion": [[5 if i == j else 1 for j in range(len(classes))] for i in range(len(classes))],
                   "best_test_acc_over_epochs": max(accs), "classes": classes,
                   "kept_class_counts": list(kept or [10] + [100] * (len(classes) - 1)),
                   "dataset": {"name": "fake", "fingerprint": fingerprint}, **(extra or {})}
        (path / "summary.json").write_text(json.dumps(summary))


PLAIN = {"imbalance": None, "rebalance": "none", "loss": "ce", "init": None}
SETTINGS = {  # the seed report's arms, as a run's config.json records them
    "imbalanced": {**PLAIN, "imbalance": "step:10"},
    "copy": {**PLAIN, "imbalance": "step:10", "rebalance": "copy"},
    "aug+loss": {**PLAIN, "imbalance": "step:10", "rebalance": "aug-only", "loss": "weighted"},
    "jigsaw-init": {**PLAIN, "init": "pre/checkpoint.pt"},
    "jigsaw-convs": {**PLAIN, "init": "pre/checkpoint.pt", "transfer_layers": ["conv1", "conv2", "conv3"]},
}


def fake_study(root: Path, arms: dict[str, list[float]], study_json=True, settings=None, classes=CLASSES):
    for arm, finals in arms.items():
        for seed, acc in enumerate(finals):
            config = {**(settings or SETTINGS).get(arm, PLAIN), "seed": seed}
            fake_run(root / "runs" / arm / f"seed-{seed}", accs=(acc - 0.1, acc), config=config, classes=classes)
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


def test_named_pretrainings_are_collected_and_only_jigsaw_runs_draw_the_puzzle_figures(tmp_path):
    root = fake_study(tmp_path / "s", {"jigsaw-init": [0.7, 0.72]})
    fake_pretraining(root / "pretrain" / "jigsaw-lt" / "seed-0")
    rotation = root / "pretrain" / "rotation-lt" / "seed-1"
    fake_pretraining(rotation)
    (rotation / "config.json").write_text(json.dumps({"task": "rotation", "epochs": 3, "seed": 1}))
    data = collect_report_data(root)
    assert sorted(r.label for r in data.pretrain) == ["pretrain:jigsaw-lt seed 0", "pretrain:rotation-lt seed 1"]
    assert [r.label for r in data.jigsaw_pretrain] == ["pretrain:jigsaw-lt seed 0"]
    html = write_report(root).read_text()
    assert (root / "figures" / "pretext.svg").exists() and "pretrain:rotation-lt" in html  # in the runs table
    assert "pretrain:jigsaw-lt seed 0" in (root / "figures" / "pretext.svg").read_text()
    assert "pretrain:rotation-lt" not in (root / "figures" / "pretext.svg").read_text()


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
    (lambda root: None, "is not a folder"),
])
def test_bad_folders_are_one_line_errors(tmp_path, capsys, make, message):
    root = tmp_path / "r"
    make(root)
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_broken_metrics_line_is_left_out_with_one_note(tmp_path, capsys):
    fake_run(tmp_path / "r", accs=(0.4, 0.5, 0.6))
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "r" / "metrics.jsonl").write_text("\n".join([lines[0], "{not json", lines[2]]) + "\n")
    assert main(["report", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err == f"longtail: note: {tmp_path / 'r' / 'metrics.jsonl'}: 1 line(s) left out (line 2 is not valid JSON)\n"


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


# -- a report replaces or deletes only what longtail wrote (report/owned.py) ----------------------

FEW = ["a", "b"]  # two classes draw faster than ten


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _report(root: Path, capsys) -> tuple[int, str]:
    code = main(["report", str(root)])
    return code, capsys.readouterr().err


def test_a_report_leaves_the_users_own_figures_alone(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    (root / "figures").mkdir()
    (root / "figures" / "mine.svg").write_text("<svg/>")
    (root / "figures" / "draft.pdf").write_bytes(b"%PDF mine")
    for _ in range(2):  # the second report replaces the first's files, and only those
        assert _report(root, capsys) == (0, "")
    assert (root / "figures" / "mine.svg").read_text() == "<svg/>"
    assert (root / "figures" / "draft.pdf").read_bytes() == b"%PDF mine"


@pytest.mark.parametrize("name", ["figures/results.svg", "figures/confusion.pdf", "report.html"])
def test_a_users_file_under_a_name_the_report_writes_is_refused_before_any_write(tmp_path, capsys, name):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    (root / name).parent.mkdir(exist_ok=True)
    (root / name).write_text("mine")
    before = _tree(root)
    code, err = _report(root, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"longtail: error: {root / name} was not written by longtail") and "move it away" in err
    assert _tree(root) == before  # nothing written, nothing removed


def test_a_figure_changed_since_the_report_wrote_it_is_not_replaced(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    assert _report(root, capsys)[0] == 0
    (root / "figures" / "results.svg").write_text("<svg>my edit</svg>")
    code, err = _report(root, capsys)
    assert code == 2 and f"{root / 'figures' / 'results.svg'} was not written by longtail or was changed since" in err
    assert (root / "figures" / "results.svg").read_text() == "<svg>my edit</svg>"


def test_figures_an_earlier_report_drew_go_only_when_unchanged(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7], "copy": [0.5, 0.6], "aug+loss": [0.6, 0.6]},
                      classes=FEW)
    assert _report(root, capsys)[0] == 0
    figures = root / "figures"
    assert {"arm-01-copy.svg", "arm-02-aug_loss.pdf"} <= {p.name for p in figures.iterdir()}
    (figures / "arm-02-aug_loss.pdf").write_bytes(b"%PDF annotated by hand")
    shutil.rmtree(root / "runs" / "copy")
    shutil.rmtree(root / "runs" / "aug+loss")
    code, err = _report(root, capsys)
    assert code == 0
    assert err == f"longtail: note: {figures / 'arm-02-aug_loss.pdf'} from an earlier report was changed since; left in place\n"
    names = {p.name for p in figures.iterdir()}
    assert "arm-01-copy.svg" not in names and "arm-02-aug_loss.svg" not in names  # unchanged: removed
    assert (figures / "arm-02-aug_loss.pdf").read_bytes() == b"%PDF annotated by hand"
    assert _report(root, capsys) == (0, "")  # no longer in the record: not mentioned again, not touched
    assert (figures / "arm-02-aug_loss.pdf").exists()


def test_the_record_cannot_point_a_deletion_outside_the_figures(tmp_path, capsys):
    from longtail.report.owned import RECORD, sha256

    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    assert _report(root, capsys)[0] == 0
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (root / "study.json.bak").write_text("keep me")
    record = json.loads((root / RECORD).read_text())
    for name in ("../precious.txt", "figures/../../precious.txt", "study.json.bak", "/etc/hostname"):
        record["files"][name] = [sha256(b"keep me")]
    (root / RECORD).write_text(json.dumps(record))
    assert _report(root, capsys) == (0, "")
    assert outside.read_text() == "keep me" and (root / "study.json.bak").read_text() == "keep me"


def test_a_report_interrupted_midway_is_recognised_by_the_next(tmp_path, capsys, monkeypatch):
    import longtail.report.owned as owned

    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7], "copy": [0.5, 0.6]}, classes=FEW)
    assert _report(root, capsys)[0] == 0
    fake_run(root / "runs" / "copy" / "seed-2", accs=(0.3, 0.9), classes=FEW)  # every figure changes
    real, calls = owned.atomic_write, []

    def dies_after_a_few(path, write):
        calls.append(path)
        if len(calls) == 6:
            raise KeyboardInterrupt
        real(path, write)

    monkeypatch.setattr(owned, "atomic_write", dies_after_a_few)
    with pytest.raises(KeyboardInterrupt):
        write_report(root)
    monkeypatch.setattr(owned, "atomic_write", real)
    assert _report(root, capsys) == (0, "")  # half old, half new files: all recognised as longtail's


def test_a_folder_reported_on_before_the_record_existed_is_adopted(tmp_path, capsys):
    from longtail.report.owned import RECORD

    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    assert _report(root, capsys)[0] == 0
    (root / RECORD).unlink()  # as an earlier longtail left it: page and figures, no record
    assert _report(root, capsys) == (0, "")
    (root / RECORD).unlink()
    (root / "figures" / "results.pdf").write_bytes(b"%PDF-1.4 a PDF of the user's")  # not matplotlib's
    code, err = _report(root, capsys)
    assert code == 2 and f"{root / 'figures' / 'results.pdf'} was not written by longtail" in err
    assert (root / "figures" / "results.pdf").read_bytes() == b"%PDF-1.4 a PDF of the user's"


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "figures").write_text("x"), "figures is not a folder"),
    (lambda root: (root / "figures").symlink_to(root / "nowhere"), "figures is not a folder"),
    (lambda root: (root / ".longtail-report.json").write_text("[]"), "is not longtail's record"),
    (lambda root: (root / ".longtail-report.json").mkdir(), "is not longtail's record"),
    (lambda root: (root / "report.html").mkdir(), "report.html was not written by longtail"),
    (lambda root: (root / "report.html").symlink_to(root / "study.json"), "report.html was not written by longtail"),
])
def test_a_folder_the_report_cannot_write_into_is_one_line(tmp_path, capsys, make, message):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    make(root)
    before = _tree(root)
    code, err = _report(root, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("longtail: error: ") and message in err
    assert _tree(root) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root (figures-as-a-file stands in)")
def test_a_read_only_folder_is_one_line_and_nothing_changes(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]}, classes=FEW)
    before = _tree(root)
    root.chmod(0o555)
    try:
        code, err = _report(root, capsys)
    finally:
        root.chmod(0o755)
    assert code == 2 and err.count("\n") == 1 and "permission denied" in err and _tree(root) == before


# -- malformed run stores: a note and the rest of the report, or one error line --------------------

SUMMARY = "runs/imbalanced/seed-1/summary.json"
BAD_SUMMARIES = {
    "empty object": ("{}", "no 'test_acc', 'classes', 'per_class_acc', 'confusion'"),
    "list": ("[]", "a JSON list, not a JSON object"),
    "null": ("null", "null, not a JSON object"),
    "empty file": ("", "empty"),
    "not JSON": ("{\"test_acc\": ", "not valid JSON"),
    "string accuracy": (lambda s: {**s, "test_acc": "0.7"}, "'test_acc' is \"0.7\", not a number from 0 to 1"),
    "NaN accuracy": (lambda s: {**s, "test_acc": float("nan")}, "'test_acc' is NaN"),
    "huge accuracy": (lambda s: {**s, "best_test_acc_over_epochs": 1e308}, "not a number from 0 to 1"),
    "no classes": (lambda s: {k: v for k, v in s.items() if k != "classes"}, "no 'classes'"),
    "classes not strings": (lambda s: {**s, "classes": [1, 2]}, "'classes' is not a list of class names"),
    "per-class of wrong length": (lambda s: {**s, "per_class_acc": [0.5]}, "not a list of 10 accuracies"),
    "confusion of wrong shape": (lambda s: {**s, "confusion": [[1, 2], [3, 4]]}, "not a 10 x 10 matrix"),
    "negative counts": (lambda s: {**s, "kept_class_counts": [-1] * 10}, "'kept_class_counts' is not a list of 10"),
    "dataset a string": (lambda s: {**s, "dataset": "cifar"}, "'dataset' is a JSON string, not an object"),
    "transfer a list": (lambda s: {**s, "transfer": [1]}, "'transfer' is a JSON list, not an object"),
    "ECE above 1": (lambda s: {**s, "test_ece": 1.5}, "'test_ece' is 1.5, not a number from 0 to 1"),
    "calibration bins of two lengths": (lambda s: {**s, "test_calibration_bins": {**BINS, "correct": [1]}},
                                        "'test_calibration_bins' is not count, confidence_sum and correct lists"),
    "more right than in the bin": (lambda s: {**s, "test_calibration_bins": {**BINS, "correct": [0, 5, 3, 6, 16]}},
                                   "'test_calibration_bins' holds a bin whose confidence sum or number correct"),
    "calibration bins a list": (lambda s: {**s, "test_calibration_bins": [1, 2]},
                                "'test_calibration_bins' is not count, confidence_sum and correct lists"),
}


def _spoil_summary(path: Path, spoil) -> None:
    if callable(spoil):
        path.write_text(json.dumps(spoil(json.loads(path.read_text()))))
    else:
        path.write_text(spoil)


def _collect(root: Path) -> tuple[object, list[str]]:
    """collect_report_data and its notes: what the report would draw, without drawing it."""
    notes: list[str] = []
    return collect_report_data(root, notes.append), notes


@pytest.mark.parametrize("case", BAD_SUMMARIES)
def test_an_unusable_summary_leaves_its_run_out_with_one_note(tmp_path, case):
    spoil, reason = BAD_SUMMARIES[case]
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7, 0.6]})
    _spoil_summary(root / SUMMARY, spoil)
    data, notes = _collect(root)
    assert len(notes) == 1 and notes[0].startswith(f"{root / SUMMARY}: ") and reason in notes[0], notes
    assert notes[0].endswith("; run left out of the report")
    assert data.aggregate["arms"]["imbalanced"]["n_seeds"] == 2 and len(data.runs) == 2


def test_a_study_with_an_unusable_summary_is_still_reported(tmp_path, capsys):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7, 0.6]})
    (root / SUMMARY).write_text("{}")
    code, err = _report(root, capsys)
    assert code == 0 and err.count("\n") == 1 and err.startswith(f"longtail: note: {root / SUMMARY}: no 'test_acc'")
    assert "<td>imbalanced</td><td>2</td>" in (root / "report.html").read_text()  # two seeds of three


@pytest.mark.parametrize("case", ["list", "string accuracy", "confusion of wrong shape"])
def test_an_unusable_summary_of_a_lone_run_is_one_error(tmp_path, capsys, case):
    spoil, reason = BAD_SUMMARIES[case]
    fake_run(tmp_path / "r")
    _spoil_summary(tmp_path / "r" / "summary.json", spoil)
    code, err = _report(tmp_path / "r", capsys)
    assert code == 2 and err.count("\n") == 1 and reason in err and err.endswith("; nothing left to report\n")


@pytest.mark.parametrize("config, reason", [
    ("[1, 2]", "a JSON list, not a JSON object"),
    ("\"text\"", "a JSON string, not a JSON object"),
    ("{\"data\": 5}", "'data' is 5, not a string"),
    ("{\"dataset_fingerprint\": [\"a\"]}", "'dataset_fingerprint' is [\"a\"], not a string"),
    ("[" * 100 + "]" * 100, "nested deeper than 32 levels"),
    ("[" * 100000 + "]" * 100000, "nested deeper than 32 levels"),
])
def test_a_config_that_is_not_an_object_leaves_its_run_out(tmp_path, capsys, config, reason):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7]})
    (root / "runs" / "imbalanced" / "seed-0" / "config.json").write_text(config)
    data, notes = _collect(root)
    assert len(notes) == 1 and reason in notes[0] and "seed-0/config.json: " in notes[0], notes
    assert [r.seed for r in data.runs] == [1]
    (tmp_path / "s" / "runs" / "imbalanced" / "seed-1" / "config.json").write_text(config)
    code, err = _report(root, capsys)  # no run left
    assert code == 2 and err.count("longtail: note:") == 2 and err.count("longtail: error:") == 1
    assert "no runs/<arm>/seed-<n>/ or pretrain/seed-<n>/ folder holds a usable run" in err


@pytest.mark.parametrize("study, note", [
    ("{\"arms\": ", "study.json: not valid JSON"),
    ("[\"imbalanced\"]", "study.json: a JSON list, not a JSON object; ignored"),
    ("{\"name\": \"s\", \"arms\": \"imbalanced\", \"baseline\": 3}", "study.json: 'arms' is a JSON string of the wrong shape; ignored"),
    ("{\"name\": \"s\", \"baselines\": [\"x\"]}", "study.json: 'baselines' is a JSON list of the wrong shape; ignored"),
])
def test_a_malformed_study_json_is_ignored_with_a_note(tmp_path, study, note):
    root = fake_study(tmp_path / "s", {"imbalanced": [0.5, 0.7], "copy": [0.5, 0.6]})
    (root / "study.json").write_text(study)
    data, notes = _collect(root)
    assert notes and note in notes[0] and data.arms == ["copy", "imbalanced"], notes


def test_a_malformed_aggregate_json_is_not_read_nor_touched(tmp_path, capsys):
    root = tmp_path / "s"
    fake_run(root / "runs" / "imbalanced" / "seed-0", classes=["a", "b"])
    (root / "aggregate.json").write_text("{\"arms\": [1, 2")
    assert _report(root, capsys) == (0, "")
    assert (root / "aggregate.json").read_text() == "{\"arms\": [1, 2"


def test_metrics_values_that_are_not_numbers_leave_gaps_with_a_note(tmp_path):
    fake_run(tmp_path / "r", accs=(0.4, 0.5, 0.6))
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    rows[1]["val_acc"], rows[2]["val_loss"] = "0.5", 1e300
    text = "".join(json.dumps(r) + "\n" for r in rows) + "[1]\n{\"epoch\": \"x\"}\nNaN\n"
    (tmp_path / "r" / "metrics.jsonl").write_text(text)
    data, notes = _collect(tmp_path / "r")
    assert notes == [f"{tmp_path / 'r' / 'metrics.jsonl'}: 3 line(s) left out (line 4 holds a JSON list, …); 2 value(s) "
                     "that are not finite numbers left out (val_acc on line 2, …)"]
    assert [sorted(k for k in row if k.startswith("val_")) for row in data.runs[0].metrics] == [
        ["val_acc", "val_balanced_acc", "val_loss"], ["val_balanced_acc", "val_loss"], ["val_acc", "val_balanced_acc"]]


def test_tables_take_the_null_and_odd_figures_a_summary_may_hold(tmp_path):
    from longtail.report import tables as T
    from longtail.report.collect import init_pairs

    root = fake_study(tmp_path / "s", {"random-init": [0.7, 0.72], "jigsaw-init": [0.71, 0.73]}, classes=["a", "b"])
    fake_pretraining(root / "pretrain" / "seed-0")
    (root / "pretrain" / "seed-0" / "summary.json").write_text(json.dumps({
        "best_over_epochs": {"val_puzzle_acc_argmax": None, "val_confidence": 0.5}, "test_puzzle_acc_argmax": None}))
    for seed in (0, 1):
        edit = root / "runs" / "jigsaw-init" / f"seed-{seed}" / "summary.json"
        summary = {k: v for k, v in json.loads(edit.read_text()).items() if k != "best_test_acc_over_epochs"}
        edit.write_text(json.dumps({**summary, "transfer": {"layers": [{"name": "conv1", "shape": 5}, {}]}}))
    data, notes = _collect(root)
    assert notes == []
    assert "<td>confidence</td><td>0.7309</td><td>0.5000</td>" in T.pretext_table(data)
    init = T.init_table(data, init_pairs(data))
    assert "<td>best test acc over epochs</td><td>0.7100 &plusmn; 0.0141</td><td>&ndash;</td><td>&ndash; (n=0)" in init
    assert "<td>conv1</td><td>5</td>" in T.layer_map_tables(data)


def test_a_study_with_no_finished_run_is_drawn_without_statistics(tmp_path, capsys):
    root = tmp_path / "s"
    for seed in (0, 1):
        fake_run(root / "runs" / "imbalanced" / f"seed-{seed}", finished=False)
    code, err = _report(root, capsys)
    assert code == 0 and "2 run(s) without summary.json drawn as partial" in err
    assert "No finished runs yet" in (root / "report.html").read_text()


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "is not a folder (it does not exist)"),
    (lambda root: root.write_text("x"), "is not a folder (it is a file)"),
])
def test_a_dir_that_is_not_a_folder_is_one_line(tmp_path, capsys, make, message):
    make(tmp_path / "r")
    code, err = _report(tmp_path / "r", capsys)
    assert code == 2 and err == f"longtail: error: {tmp_path / 'r'} {message}\n"


# -- a study of its own (not the seed's arms): a headline; the long-tail figures --------------------

# Per arm and seed: (test acc, balanced acc). ldam-drw is best on balanced accuracy, focal on test accuracy.
OWN_ARMS = {"ce": [(0.60, 0.50), (0.62, 0.52), (0.61, 0.51)],
            "focal": [(0.80, 0.55), (0.81, 0.56), (0.82, 0.57)],
            "ldam-drw": [(0.70, 0.60), (0.71, 0.63), (0.72, 0.61)]}
LT_KEPT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, imbalance 100


def own_study(root: Path, arms=OWN_ARMS, baseline: str | None = "ce", epochs: int = 2) -> Path:
    for arm, seeds in arms.items():
        for seed, (acc, balanced) in enumerate(seeds):
            fake_run(root / "runs" / arm / f"seed-{seed}", accs=(acc - 0.1, acc)[-epochs:], kept=LT_KEPT,
                     config={**PLAIN, "imbalance": "exponential:100", "loss": arm, "seed": seed},
                     summary={"test_balanced_acc": balanced, "test_ece": 0.08, "test_calibration_bins": BINS})
    study = {"name": "own", "arms": list(arms), **({"baseline": baseline} if baseline else {})}
    (root / "study.json").write_text(json.dumps(study))
    return root


def _headline(html: str) -> str:
    return re.search(r"<p id='headline'>(.*?)</p>", html).group(1)


def test_a_study_of_its_own_gets_a_headline_with_the_winner_and_its_margin(tmp_path):
    root = own_study(tmp_path / "s")
    html = write_report(root).read_text()
    # balanced acc, ldam-drw - ce per seed: 0.10, 0.11, 0.10; mean 0.10333, std 0.0057735; 95% interval
    # 0.10333 +- t(0.975, 2) 0.0057735 / sqrt 3 = 0.10333 +- 4.3027 x 0.0033333 = 0.10333 +- 0.014342;
    # t = 0.10333 / 0.0033333 = 31.0 on 2 degrees of freedom: p = 0.00104
    assert _headline(html) == (
        "Arm <strong>ldam-drw</strong> has the highest balanced acc, 0.6133 &plusmn; 0.0153 over 3 seed(s); its "
        "baseline, <code>ce</code>, has 0.5100 &plusmn; 0.0100. Margin +0.1033, the mean difference over 3 paired "
        "seed(s) (95% interval +0.0890 to +0.1177, p = 0.00104): more than the seed-to-seed noise (paired t-test, "
        "p &lt; 0.05).")
    assert "Homework" not in html and "seed report" not in html.lower()  # none of the seed's arms or numbers
    # test acc: focal - ce = 0.20, 0.19, 0.21: mean 0.2, std 0.01, 0.2 +- 4.3027 x 0.01 / sqrt 3 = 0.2 +- 0.0248
    html = write_report(root, metric="test_acc").read_text()
    assert _headline(html).startswith("Arm <strong>focal</strong> has the highest test acc, 0.8100 &plusmn; 0.0100")
    assert "Margin +0.2000, the mean difference over 3 paired seed(s) (95% interval +0.1752 to +0.2248" in html


def test_the_headline_compares_with_the_next_best_arm_when_there_is_no_baseline(tmp_path):
    html = write_report(own_study(tmp_path / "none", baseline=None)).read_text()
    # ldam-drw - focal on balanced acc: 0.05, 0.07, 0.04: mean 0.05333
    assert "Arm <strong>ldam-drw</strong>" in _headline(html) and "the next best arm, <code>focal</code>" in html
    assert "Margin +0.0533" in html
    arms = {"ce": [(0.6, 0.7), (0.6, 0.72)], "focal": [(0.6, 0.69), (0.6, 0.70)]}
    html = write_report(own_study(tmp_path / "base", arms)).read_text()
    # the baseline wins: ce - focal = 0.01, 0.02; two seeds: the 2 x std rule, 2 x std(0.69, 0.70) = 0.0141
    assert _headline(html) == (
        "The baseline arm <strong>ce</strong> has the highest balanced acc, 0.7100 &plusmn; 0.0141 over 2 seed(s); "
        "the next best arm, <code>focal</code>, has 0.6950 &plusmn; 0.0071. Margin +0.0150, the mean difference over "
        "2 paired seed(s) (2 &times; the std of <code>focal</code> = 0.0141): more than the seed-to-seed noise "
        "(|mean diff| &gt; 2 x baseline std).")


def test_the_reference_arm_sets_the_bar_and_the_headline_says_what_the_winner_wins_back(tmp_path):
    arms = {**OWN_ARMS, "balanced": [(0.9, 0.90), (0.9, 0.92), (0.9, 0.91)]}
    root = own_study(tmp_path / "s", arms)
    study = json.loads((root / "study.json").read_text())
    (root / "study.json").write_text(json.dumps({**study, "reference": "balanced"}))
    html = write_report(root).read_text()
    # the reference has the highest balanced acc but does not compete: ldam-drw still wins; it wins back
    # (0.6133 - 0.51) / (0.91 - 0.51) = 0.10333 / 0.4 = 25.8% of the 0.4000 gap
    assert _headline(html).startswith("Arm <strong>ldam-drw</strong> has the highest balanced acc")
    assert _headline(html).endswith(
        "It wins back 25.8% of the 0.4000 that imbalance costs its baseline (reference arm <code>balanced</code>, "
        "0.9100 &plusmn; 0.0100: recovery = (arm &minus; baseline) / (reference &minus; baseline), means over shared "
        "seeds).")
    table = re.search(r"<table id='long-tail'>.*?</table>", html).group(0)
    # focal: (0.56 - 0.51) / 0.4 = 12.5%; the baseline and the reference have none
    assert "<th>recovery</th>" in table and "<td>25.8%</td>" in table and "<td>12.5%</td>" in table
    assert table.count("<td>&ndash;</td></tr>") == 2
    assert "Recovery: the share of the balanced-accuracy gap" in html


def test_the_seed_studys_sections_stay_and_a_seed_name_alone_is_not_enough(tmp_path):
    html = write_report(fake_study(tmp_path / "seed", {"imbalanced": [0.5, 0.7], "copy": [0.55, 0.65]})).read_text()
    assert "Homework 02: the imbalance study" in html and "id='headline'" not in html
    # the long-tail preset's "copy" arm has the seed's name but not its setting (exponential:100)
    root = own_study(tmp_path / "lt", {"ce": OWN_ARMS["ce"], "copy": OWN_ARMS["focal"]})
    html = write_report(root).read_text()
    assert "Homework" not in html and "Arm <strong>copy</strong>" in _headline(html)


def test_the_long_tail_figures_are_drawn_tabled_and_recorded(tmp_path):
    root = own_study(tmp_path / "s")
    html = write_report(root).read_text()
    record = json.loads((root / ".longtail-report.json").read_text())["files"]
    for stem in ("reliability", "accuracy-by-class-size"):
        for ext in ("svg", "pdf"):
            assert (root / "figures" / f"{stem}.{ext}").is_file() and f"figures/{stem}.{ext}" in record
    table = html[html.index("<table id='long-tail'>"):]
    table = table[:table.index("</table>")]
    # ECE 0.08 in every run; fake per-class recall: class 0 (5000 images) acc - 0.2, the others acc + 0.1;
    # ce's seeds: 0.60, 0.62, 0.61 -> many (5000 ... 139): (0.41 + 7 x 0.71) / 8 = 0.6725, medium (83, 50): 0.71
    assert ("<tr><td>ce</td><td>3</td><td>0.0800 &plusmn; 0.0000</td><td>0.6725 &plusmn; 0.0100</td>"
            "<td>0.7100 &plusmn; 0.0100</td><td>0.6100 &plusmn; 0.0100</td>") in table
    assert ">few" not in table  # no class under 20 images: no column
    notes: list[str] = []
    for seed in (0, 1, 2):  # an arm whose runs predate the calibration bins: named, left out of the diagram
        path = root / "runs" / "focal" / f"seed-{seed}" / "summary.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                    if k != "test_calibration_bins"}))
    html = write_report(root, note=notes.append).read_text()
    assert notes == [] and "No calibration bins in the summary.json of arm(s) focal" in html


def test_the_reliability_diagram_draws_the_added_bins_of_the_seeds(tmp_path):
    from longtail.report.figures import pooled_calibration_bins, reliability_figure

    root = own_study(tmp_path / "s")
    data = collect_report_data(root)
    assert pooled_calibration_bins(data.finished("ce")).tolist() == [[3 * v for v in BINS[k]] for k in BINS]
    ax = reliability_figure(data, ["ce"]).axes[0]
    bars = [p.get_height() for p in ax.patches]
    assert bars == pytest.approx([1 / 4, 3 / 6, 6 / 10, 16 / 20])  # the empty first bin draws nothing
    assert ax.get_title() == "ce (n=3), ECE 0.080"


def test_bar_charts_start_their_value_axis_near_the_data(tmp_path):
    from longtail.report.figures import results_figure, value_limits

    assert value_limits([0.72, 0.78, 0.7, 0.8]) == pytest.approx((0.65, 0.85))
    assert value_limits([0.0, 0.3]) == (0.0, 0.35) and value_limits([0.99, 1.0]) == pytest.approx((0.95, 1.0))
    assert value_limits([0.5, 0.5])[1] > value_limits([0.5, 0.5])[0]  # never of zero height
    arms = {arm: [(a, a) for a in accs] for arm, accs in {"ce": [0.70, 0.72], "focal": [0.75, 0.8]}.items()}
    root = own_study(tmp_path / "s", arms)
    data = collect_report_data(root)
    low, high = results_figure(data, [("test_acc", "test acc")]).axes[0].get_ylim()
    assert 0.6 <= low < 0.7 and 0.8 < high <= 0.9
    html = write_report(root).read_text()
    assert f"The value axis starts at {low:.2f}, not at 0." in html


def test_one_epoch_runs_draw_sensible_axes_without_warnings(tmp_path):
    import warnings

    from longtail.report.html import build_report

    root = own_study(tmp_path / "s", epochs=1)
    fake_run(root / "runs" / "ce" / "seed-3", accs=(0.5,), finished=False, config={"epochs": 1, "seed": 3})
    data = collect_report_data(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what write_report would hide: a singular limit, an empty mean
        build_report(data, note=lambda line: None)
    from longtail.report.figures import curves_figure

    for ax in curves_figure(data, "val_acc", "validation accuracy").axes:
        assert ax.get_xlim() == (0.5, 1.5) and [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
        low, high = ax.get_ylim()
        assert high > low and all(line.get_xydata().size for line in ax.get_lines())  # no empty curve
    html = (root / "report.html").read_text()
    assert "an error bar where there is one epoch" in html


def test_the_report_command_takes_the_headline_metric(tmp_path, capsys):
    from longtail.cli import build_parser
    from longtail.report.tables import HEADLINE_METRICS

    root = own_study(tmp_path / "s")
    assert main(["report", str(root), "--metric", "test_acc"]) == 0
    assert "Arm <strong>focal</strong>" in (root / "report.html").read_text()
    report = next(a for a in build_parser()._subparsers._group_actions[0].choices["report"]._actions
                  if a.dest == "metric")
    assert tuple(report.choices) == HEADLINE_METRICS and report.default == HEADLINE_METRICS[0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(root), "--metric", "test_ece"])
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(LongtailError, match="not one a headline ranks on"):
        write_report(root, metric="loss")
