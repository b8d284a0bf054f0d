"""Two-process data-parallel training with torchrun on CPU (gloo): one run directory, written by
rank 0 alone, with metrics over the whole splits (confusion matrices summed across ranks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_gloo_training(cifar, cifar_zip, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node=2", "--standalone", "-m", "longtail", "train", "--data", str(cifar_zip),
           "--out", str(out), "--epochs", "2", "--limit-train", "2000", "--val-size", "500", "--limit-test", "600",
           "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    # rank 0 alone reports: one headline and one per-class table
    assert r.stdout.count("macro-F1") == 1 and r.stdout.count("majority acc") == 1, r.stdout
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"}
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["world_size"] == 2 and [r["epoch"] for r in rows] == [1, 2]
    cm = torch.tensor(summary["confusion"])
    assert int(cm.sum()) == 600  # both ranks' halves of the test split, summed
    assert abs(cm.diagonal().sum().item() / 600 - summary["test_acc"]) < 1e-12
    assert summary["test_acc"] > 0.2
