"""The one run lifecycle (longtail.run): folders it may write, resume checks, the lock, faults.

Each case drives the CLI and asserts the exit code, one line on stderr, no traceback, and that
nothing that was there before is gone or changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longtail.cli import main
from longtail.runs import LOCK_FILE, RunDir, save_checkpoint
from tests.conftest import one_line_error, snapshot

TINY = ["--epochs", "1", "--batch-size", "8", "--val-size", "4", "--quiet", "--recipe", "seed", "--precision", "fp32"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("img"), classes=2, per_class=12, size=16)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out


def test_out_that_holds_a_users_files_is_refused_and_left_alone(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "checkpoint.pt").write_bytes(b"my own weights")
    (mine / "metrics.jsonl").write_text('{"my": "numbers"}\n')
    before = snapshot(mine)
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(mine), *TINY], "holds no longtail run")
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(mine), *TINY, "--resume"], "holds no longtail run")
    assert snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def test_a_config_json_longtail_did_not_write_is_refused(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"learning_rate": 3}')
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(mine), *TINY, "--resume"],
                   "config.json that longtail did not write")
    assert (mine / "config.json").read_text() == '{"learning_rate": 3}'


def test_an_empty_existing_folder_is_used(data, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "empty"), *TINY]) == 0
    assert {p.name for p in (tmp_path / "empty").iterdir()} == {"config.json", "metrics.jsonl", "summary.json",
                                                                 "checkpoint.pt"}


@pytest.mark.parametrize("flags, key", [(["--epochs", "9"], "epochs"), (["--lr", "0.5"], "lr"),
                                        (["--seed", "1"], "seed"), (["--loss", "focal"], "loss")])
def test_resume_of_a_finished_run_with_other_settings_is_refused(data, finished, capsys, flags, key):
    before = snapshot(finished)
    argv = ["train", "--data", str(data), "--out", str(finished), *TINY, "--resume"]
    err = one_line_error(capsys, argv + flags, f"made with {key}=")
    assert "cannot resume" in err and snapshot(finished) == before


def test_resume_of_a_finished_run_with_the_same_settings_reports_it(data, finished, capsys):
    before = snapshot(finished)
    # threads and quiet do not change a run's numbers: they may differ
    assert main(["train", "--data", str(data), "--out", str(finished), *TINY, "--resume", "--threads", "1"]) == 0
    summary = json.loads((finished / "summary.json").read_text())
    assert f"test acc {summary['test_acc']:.4f}" in capsys.readouterr().out and snapshot(finished) == before


def test_resume_with_other_data_is_refused(finished, tmp_path, capsys):
    from tests.conftest import make_image_folder

    other = make_image_folder(tmp_path / "other", classes=2, per_class=12, size=16, seed=5)
    one_line_error(capsys, ["train", "--data", str(other), "--out", str(finished), *TINY, "--resume"],
                   "made with other data")


@pytest.mark.parametrize("flag", ["--out", "--data"])
def test_empty_paths_are_refused(data, tmp_path, capsys, flag):
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY]
    argv[argv.index(flag) + 1] = ""
    one_line_error(capsys, argv, "")
    assert not (tmp_path / "r").exists() and list(Path.cwd().glob("config.json")) == []


@pytest.mark.parametrize("flags, needle", [
    (["--lr", "nan"], "lr in the command line must be a finite number"),
    (["--lr", "inf"], "must be a finite number"),
    (["--lr", "1e308"], "lr in the command line must be > 0 and <= 100"),
    (["--seed", str(2**64)], "seed in the command line must be >= 0 and <= 4294967295"),
    (["--momentum=-inf"], "must be a finite number"),
    (["--weight-decay", "nan"], "must be a finite number"),
    (["--transfer-lr-scale", "inf"], "must be a finite number"),
    (["--label-smoothing", "-0.1"], "label_smoothing in the command line must be >= 0"),
    (["--threads", "0"], "threads in the command line must be >= 1"),
    (["--batch-size", "0"], "batch_size in the command line must be >= 1"),
    (["--imbalance", "zipf:2"], "unknown imbalance profile 'zipf'"),
    (["--optimizer", "lion"], "unknown optimizer 'lion'"),
    (["--schedule", "step"], "unknown schedule 'step'"),
])
def test_absurd_settings_are_one_line(data, tmp_path, capsys, flags, needle):
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, *flags], needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, needle", [(["--tau", "inf"], "tau in the command line must be a finite number"),
                                           (["--tau", "nan"], "must be a finite number"),
                                           (["--grayscale", "1.5"], "grayscale in the command line must be >= 0"),
                                           (["--grid", "1"], "grid in the command line must be >= 2"),
                                           (["--task", "colour"], "unknown pretext task 'colour'")])
def test_absurd_pretraining_settings_are_one_line(data, tmp_path, capsys, flags, needle):
    one_line_error(capsys, ["pretrain", "--data", str(data), "--out", str(tmp_path / "p"), *flags], needle)


@pytest.mark.parametrize("text, needle", [("lr = nan\n", "must be a finite number"),
                                          ("lr = -inf\n", "must be a finite number"),
                                          ("seed = 18446744073709551615\n", "<= 4294967295")])
def test_absurd_settings_in_toml_are_one_line(data, tmp_path, capsys, text, needle):
    (tmp_path / "c.toml").write_text(text)
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--config",
                            str(tmp_path / "c.toml")], needle)


def test_a_failed_start_leaves_no_folder_behind(tmp_path, capsys):
    one_line_error(capsys, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *TINY],
                   "not found")
    assert not (tmp_path / "r").exists()


def test_a_second_process_on_the_same_run_is_refused_with_the_first_ones_pid(data, tmp_path):
    out = tmp_path / "r"
    with RunDir(out).locked():
        r = subprocess.run([sys.executable, "-m", "longtail", "train", "--data", str(data), "--out", str(out), *TINY],
                           capture_output=True, text=True, timeout=120)
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"in use by another longtail process (pid {os.getpid()})" in r.stderr
    assert not out.exists()  # the lock holder created it, wrote nothing, and removed it


def test_stale_temporary_checkpoints_are_removed_on_the_next_start(data, tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2"]) == 0
    (out / "summary.json").unlink()  # as if killed before the end
    stale = [out / ".checkpoint.pt.abc123.tmp", out / ".metrics.jsonl.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (out / ".my-notes.tmp").write_text("not longtail's")
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2", "--resume"]) == 0
    assert not any(p.exists() for p in stale) and (out / ".my-notes.tmp").exists()


def test_a_checkpoint_of_another_architecture_is_refused_on_resume(data, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2"]) == 0
    (out / "summary.json").unlink()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["model"] = {k: torch.zeros(3, 3) if v.ndim > 1 else v for k, v in ckpt["model"].items()}
    save_checkpoint(out / "checkpoint.pt", {k: v for k, v in ckpt.items() if k != "format"})
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2", "--resume"],
                   "does not fit this run's model")


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs: a run's checkpoint (~1.5 MB for the seed CNN) cannot fit."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_while_a_checkpoint_is_written_is_one_line(data, small_disk, capsys):
    out = small_disk / "r"
    err = one_line_error(capsys, ["train", "--data", str(data), "--out", str(out), *TINY],
                         "no space left on the device while writing")
    assert "checkpoint.pt" in err
    assert not (out / "summary.json").exists() and not list(out.glob(".*.tmp"))
    assert json.loads((out / "config.json").read_text())["epochs"] == 1  # earlier files intact


def test_an_unwritable_folder_is_one_line(data, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        one_line_error(capsys, ["train", "--data", str(data), "--out", str(ro / "r"), *TINY], "cannot write")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_each_epoch_prints_one_line_and_the_run_ends_with_a_per_class_table(data, tmp_path, capsys):
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--epochs", "2", "--no-quiet",
            "--imbalance", "counts:9,3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch ") and "train loss" in line]
    assert lines == [f"epoch {r['epoch']}/2: train loss {r['train_loss']:.4f}, val acc {r['val_acc']:.4f}, "
                     f"balanced {r['val_balanced_acc']:.4f}, {r['images_per_s']:,.0f} img/s" for r in rows]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    out = captured.out.splitlines()
    assert out[1].split() == ["class", "kept", "trained", "on", "test", "recall"]
    for j, line in enumerate(out[2:4]):
        assert line.split() == [summary["classes"][j], str(summary["kept_class_counts"][j]),
                                str(summary["train_class_counts"][j]), f"{summary['per_class_acc'][j]:.4f}"]
    assert out[4] == (f"minority acc {summary['per_class_acc'][1]:.4f} (1 class), "
                      f"majority acc {summary['per_class_acc'][0]:.4f} (1 class)")


def test_quiet_runs_print_no_epoch_lines(data, tmp_path, capsys):
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY]) == 0
    assert "epoch 1/1" not in capsys.readouterr().err


def test_tensorboard_writes_every_epoch_row_as_scalars(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "2", "--tensorboard"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "val_acc", "val_balanced_acc", "lr", "test_acc"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows], rel=1e-6)


def test_tensorboard_without_the_extra_is_one_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--tensorboard"],
                   "pip install 'longtail[tensorboard]'")
    assert not (tmp_path / "r").exists()


def test_a_run_made_before_a_setting_existed_still_resumes(data, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    for key in ("model", "rebalance_from_epoch", "ece_bins", "tensorboard", "mix", "mix_alpha", "remix_kappa",
                "remix_tau"):  # settings added later
        config.pop(key)
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--resume"]) == 0
    # at a value other than the default, the missing setting is a change
    one_line_error(capsys, ["train", "--data", str(data), "--out", str(out), *TINY, "--resume", "--model", "resnet32"],
                   "made with model=None, now model='resnet32'")
