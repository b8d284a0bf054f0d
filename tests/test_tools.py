"""tools/: the scripts whose output docs/results.md quotes, against hand-computed figures."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_tool


def test_selection_rules_by_hand(tmp_path, capsys):
    tool = load_tool("selection_rules")
    run = tmp_path / "run"
    run.mkdir()
    accs = [0.50, 0.70, 0.64, 0.70, 0.66, 0.62]  # epochs 1-6; 0.70 twice: the first is the running best
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "val_acc": 0.1, "test_acc": a}) + "\n"
                                               for e, a in enumerate(accs, start=1)))
    (run / "summary.json").write_text(json.dumps({"best_epoch": 5, "test_acc": 0.66}))
    f = tool.selection_figures(run, last=3)
    assert f["val_selected"] == {"epoch": 5, "test_acc": 0.66}
    assert f["best_test"] == {"epoch": 2, "test_acc": 0.70}
    assert f["last_epoch"] == {"epoch": 6, "test_acc": 0.62}
    # last 3: 0.70, 0.66, 0.62 -> mean 0.66, sample std 0.04
    assert f["last_epochs"]["n"] == 3 and f["last_epochs"]["mean"] == pytest.approx(0.66)
    assert f["last_epochs"]["std"] == pytest.approx(0.04)
    assert tool.main([str(run), "--last", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"| {run} | 0.6600 (epoch 5) | 0.7000 (epoch 2) | 0.6200 (epoch 6) | 0.6600 ± 0.0400 |"
    # a run without per-epoch test accuracy, or no run at all: one line, exit 2
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.1}) + "\n")
    assert tool.main([str(run)]) == 2 and tool.main([str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no per-epoch test accuracy" in err[0] and err[1].startswith("selection_rules: error:")
