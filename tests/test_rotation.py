"""The rotation pretext task (Gidaris et al. 2018): labels against hand-rotated images, learning on
a fixed batch, a CLI run end to end, and exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from longtail.errors import LongtailError
from longtail.models import SeedCNN, SeedCNNConfig
from longtail.tasks.rotation import ANGLES, rotate_batch


def test_rotation_labels_match_hand_rotated_images():
    # 3x3 with all pixels distinct, so any wrong turn or flip shows
    image = torch.tensor([[1, 2, 3],
                          [4, 5, 6],
                          [7, 8, 9]]).view(1, 1, 3, 3)
    by_hand = {  # counter-clockwise as displayed, row 0 on top
        0: [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        90: [[3, 6, 9], [2, 5, 8], [1, 4, 7]],
        180: [[9, 8, 7], [6, 5, 4], [3, 2, 1]],
        270: [[7, 4, 1], [8, 5, 2], [9, 6, 3]],
    }
    two = torch.cat([image, image + 10])
    rotated, labels = rotate_batch(two)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for i, label in enumerate(labels.tolist()):
        expected = torch.tensor(by_hand[ANGLES[label]]) + (10 if i % 2 else 0)
        assert torch.equal(rotated[i, 0], expected), (i, ANGLES[label])


def test_rotation_refuses_non_square_images():
    with pytest.raises(LongtailError, match="square"):
        rotate_batch(torch.zeros(1, 3, 4, 6))


def test_a_few_steps_reduce_the_rotation_loss_on_a_fixed_batch():
    from longtail.tasks.rotation import RotationTask

    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    x[:, :, :4] += 1.0  # a bright top band: which way is up is learnable
    task = RotationTask.__new__(RotationTask)
    model = SeedCNN(SeedCNNConfig(num_classes=4, image_size=(16, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(15):
        loss = task.training_loss(model, x, torch.zeros(8, dtype=torch.long), (0, 0, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=0.3)
    assert losses[-1] < 0.5 * losses[0]


def test_pretrain_rotation_via_the_cli_writes_rotation_metrics(tiny_folder, tmp_path, capsys):
    from longtail.cli import main
    from longtail.runs import load_checkpoint

    folder = tiny_folder(tmp_path / "img", classes=2, per_class=10, size=16)
    out = tmp_path / "run"
    code = main(["pretrain", "--task", "rotation", "--data", str(folder), "--out", str(out), "--epochs", "1",
                 "--batch-size", "8", "--precision", "fp32"])
    assert code in (0, None), capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "rotation" and summary["finished"]
    keys = {"rotation_acc", *(f"rotation_acc_{a}" for a in ANGLES)}
    assert {f"test_{k}" for k in keys} <= summary.keys() and {f"val_{k}" for k in keys} <= summary.keys()
    # the overall accuracy is the mean of the four per-angle ones (equal counts per angle)
    mean = sum(summary[f"test_rotation_acc_{a}"] for a in ANGLES) / 4
    assert summary["test_rotation_acc"] == pytest.approx(mean)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {f"val_{k}" for k in keys} <= row.keys()
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["kind"] == "rotation" and ckpt["arch"]["name"] == "SeedCNN" and ckpt["arch"]["num_classes"] == 4
    assert {"conv1.weight", "conv2.weight", "conv3.weight", "bn.weight", "fc1.weight"} <= ckpt["model"].keys()


class _Crash(Exception):
    pass


def test_a_rotation_run_stopped_mid_epoch_resumes_to_the_same_numbers(tiny_folder, tmp_path, monkeypatch):
    import longtail.run
    from longtail.config import resolve_pretrain_config
    from longtail.run import run as run_pretraining

    folder = tiny_folder(tmp_path / "img", classes=2, per_class=12, size=16)
    settings = dict(task="rotation", data=str(folder), epochs=2, batch_size=8, checkpoint_every=1, quiet=True,
                    precision="fp32", augment=["crop", "flip"])
    straight = run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "a")}))
    real_fit = longtail.run.fit

    def fit_that_crashes(*args, save, **kwargs):
        calls = []

        def save_then_crash(state):
            save(state)
            calls.append(1)
            if len(calls) == 2:
                raise _Crash

        return real_fit(*args, save=save_then_crash, **kwargs)

    monkeypatch.setattr(longtail.run, "fit", fit_that_crashes)
    with pytest.raises(_Crash):
        run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "b")}))
    monkeypatch.setattr(longtail.run, "fit", real_fit)
    resumed = run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "b"), "resume": True}))

    def numbers(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]

    assert numbers("b") == numbers("a")
    assert resumed["test_loss"] == straight["test_loss"] and resumed["test_rotation_acc"] == straight["test_rotation_acc"]
