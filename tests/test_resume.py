"""Crash safety: a run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted one;
SIGTERM checkpoints and says how to resume; a non-finite loss stops with the epoch and step;
a full disk leaves earlier files intact."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from longtail.runs import load_checkpoint

TIMING = {"seconds", "images_per_s"}


def _args(cifar_zip, out, *extra, precision="fp32"):
    return [sys.executable, "-m", "longtail", "train", "--data", str(cifar_zip), "--out", str(out),
            "--recipe", "seed", "--precision", precision, "--epochs", "2", "--limit-train", "1500",
            "--val-size", "500", "--limit-test", "500", "--checkpoint-every", "5", "--seed", "3", "--quiet", *extra]


def _rows(out):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _wait_for_mid_epoch_checkpoint(out, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "checkpoint.pt").exists():
            try:
                state = load_checkpoint(out / "checkpoint.pt")["fit_state"]
            except Exception:  # noqa: BLE001 - caught mid-rename on a slow disk; look again
                state = None
            if state and state["epoch"] == 0 and state["step"] >= 5:
                return
        if proc.poll() is not None:
            pytest.fail("training ended before a mid-epoch checkpoint was seen")
        time.sleep(0.05)
    pytest.fail("no mid-epoch checkpoint appeared")


# The settings checked bitwise: each adds random streams or state that a resume must restore.
KILL_SETTINGS = {
    "fp32": ("fp32", []),
    # bf16 too: every random stream is derived from (seed, epoch, step) and the CPU kernels are
    # deterministic, so a resumed bf16 run also matches bit for bit on the same machine.
    "bf16": ("bf16", []),
    # batch augmentation, re-augmented copies, one-cycle schedule, label smoothing, DRW's epoch switch
    "fast+copy-aug+ldam-drw": ("fp32", ["--recipe", "fast", "--imbalance", "exponential:10", "--rebalance", "copy-aug",
                                        "--loss", "ldam-drw", "--head", "cosine"]),
    # a per-epoch sampler that starts at epoch 1 (deferred re-sampling), the sigmoid CB-focal loss
    "class-aware-drs+cb-focal": ("fp32", ["--imbalance", "exponential:10", "--rebalance", "class-aware",
                                          "--rebalance-from-epoch", "1", "--loss", "cb-focal"]),
    # mixing: lambda and the pairing drawn from (seed, epoch, step); Remix's per-sample label
    # weights through a weighted-mean loss
    "mixup": ("fp32", ["--mix", "mixup", "--mix-alpha", "0.4"]),
    "remix+weighted": ("fp32", ["--imbalance", "exponential:10", "--mix", "remix", "--loss", "weighted"]),
}


@pytest.mark.parametrize("setting", list(KILL_SETTINGS))
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(cifar, cifar_zip, tmp_path, setting):
    precision, extra = KILL_SETTINGS[setting]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_args(cifar_zip, whole, *extra, precision=precision), check=True, capture_output=True,
                   timeout=300)
    proc = subprocess.Popen(_args(cifar_zip, broken, *extra, precision=precision), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_mid_epoch_checkpoint(broken, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "summary.json").exists()
    again = subprocess.run(_args(cifar_zip, broken, *extra, precision=precision), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to overwrite silently
    subprocess.run(_args(cifar_zip, broken, *extra, "--resume", precision=precision), check=True,
                   capture_output=True, timeout=300)
    assert not list(broken.glob(".*.tmp"))  # what the killed process left half-written is gone
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(broken / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _rows(whole) == _rows(broken)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, broken))
    for key in ("test_acc", "test_balanced_acc", "confusion", "best_epoch", "best_test_acc_over_epochs"):
        assert sa[key] == sb[key], key


def test_sigterm_writes_checkpoint_and_says_how_to_resume(cifar, cifar_zip, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_args(cifar_zip, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_mid_epoch_checkpoint(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "SIGTERM" in err and "--resume" in err and err.strip().count("\n") == 0
    state = load_checkpoint(out / "checkpoint.pt")["fit_state"]
    assert state["step"] > 0 or state["epoch"] > 0
    done = subprocess.run(_args(cifar_zip, out, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (out / "summary.json").exists()


def test_resume_with_changed_settings_is_refused(cifar, cifar_zip, tmp_path, capsys):
    from longtail.cli import main

    out = tmp_path / "run"
    (out).mkdir()
    stored = {"lr": 0.5, "seed": 0, "dataset_fingerprint": cifar.fingerprint}
    (out / "config.json").write_text(json.dumps(stored))
    code = main(["train", "--data", str(cifar_zip), "--out", str(out), "--resume", "--quiet", "--limit-train", "500"])
    err = capsys.readouterr().err
    # exit status 2 alone would also pass for any other one-line error (a bad flag, missing data)
    assert code == 2 and f"cannot resume {out}: it was made with" in err and err.count("\n") == 1, err
    assert json.loads((out / "config.json").read_text()) == stored  # the stored settings are left alone


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path, capsys, tiny_folder):
    from longtail import losses
    from longtail.cli import main

    class Exploding(torch.nn.Module):
        def forward(self, logits, targets):
            return logits.sum() * float("nan")

    losses.LOSSES["test-nan"] = lambda ctx: Exploding()
    try:
        data = tiny_folder(tmp_path / "d", classes=2, per_class=10)
        code = main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--loss", "test-nan",
                     "--epochs", "1", "--val-size", "4", "--quiet"])
    finally:
        del losses.LOSSES["test-nan"]
    err = capsys.readouterr().err
    assert code == 2 and "became nan at epoch 1, step 1" in err
    assert not (tmp_path / "r" / "summary.json").exists()


def test_full_disk_is_one_line_and_keeps_earlier_files(tmp_path, monkeypatch):
    from longtail import runs
    from longtail.errors import LongtailError

    target = tmp_path / "summary.json"
    runs.write_json(target, {"ok": 1})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(LongtailError, match="no space left"):
        runs.write_json(target, {"ok": 2})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
