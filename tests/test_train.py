"""End-to-end classifier runs on a few thousand real CIFAR-10 images; the lr schedules by hand."""

import json
import math

import pytest
import torch

from longtail.config import resolve_train_config
from longtail.run import run as run_training
from longtail.runs import load_checkpoint
from longtail.engine import build_scheduler

SMALL = dict(limit_train=4000, val_size=1000, limit_test=2000, quiet=True)
TIMING_KEYS = {"seconds", "images_per_s"}


def _cfg(cifar_zip, out, **kw):
    return resolve_train_config({"data": str(cifar_zip), "out": str(out), **SMALL, **kw})


@pytest.fixture(scope="module")
def fast_run(cifar, cifar_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("fast") / "run"
    summary = run_training(_cfg(cifar_zip, out, epochs=2), cifar)
    return out, summary


def test_two_epochs_on_4000_images_beat_35_percent(fast_run):
    _, summary = fast_run
    assert summary["test_acc"] > 0.35
    assert summary["n_train"] == 4000 and summary["n_val"] == 1000 and summary["n_test"] == 2000
    assert summary["train_class_counts"] == [400] * 10


def test_run_directory_contents(fast_run):
    out, summary = fast_run
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("lr", "train_loss", "val_loss", "val_acc", "val_balanced_acc", "seconds", "images_per_s", "test_acc"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert summary["best_test_acc_over_epochs"] == max(r["test_acc"] for r in rows)
    assert summary["val_acc"] == rows[summary["best_epoch"] - 1]["val_acc"]
    cm = torch.tensor(summary["confusion"])
    assert int(cm.sum()) == 2000 and abs(cm.diagonal().sum().item() / 2000 - summary["test_acc"]) < 1e-12
    for key in ("test_balanced_acc", "test_macro_f1", "per_class_acc", "n_params", "wall_seconds", "versions",
                "device", "kept_class_counts"):
        assert key in summary
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["kind"] == "classifier" and ckpt["arch"]["name"] == "SeedCNN"


def test_same_seed_same_numbers(cifar, cifar_zip, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = _cfg(cifar_zip, tmp_path / name, epochs=1, limit_train=1000, recipe="seed", seed=11)
        run_training(cfg, cifar)
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        runs.append(([{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows],
                     load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    other = _cfg(cifar_zip, tmp_path / "c", epochs=1, limit_train=1000, recipe="seed", seed=12)
    assert run_training(other, cifar)["test_acc"] != json.loads((tmp_path / "a" / "summary.json").read_text())["test_acc"]


def test_grayscale_non_square_folder_trains(tiny_folder, tmp_path):
    data = tiny_folder(tmp_path / "g", classes=3, per_class=20, size=(24, 20), channels=1)
    cfg = resolve_train_config({"data": str(data), "out": str(tmp_path / "run"), "epochs": 1, "quiet": True,
                                "batch_size": 16, "val_size": 6})
    summary = run_training(cfg)
    assert summary["dataset"]["image_shape"] == [1, 24, 20] and len(summary["per_class_acc"]) == 3


def _lrs(name, lr, total_steps):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, name, lr, total_steps)
    lrs = []
    for _ in range(total_steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle_schedule_by_hand():
    # 100 steps at lr 0.1: warm-up over int(0.25 x 100) = 25 steps, linear from lr/10 to lr,
    # then linear to 0 at step 100
    lrs = _lrs("onecycle", 0.1, 100)
    want = {0: 0.01, 1: 0.1 * (0.1 + 0.9 / 25), 10: 0.1 * (0.1 + 0.9 * 10 / 25), 24: 0.1 * (0.1 + 0.9 * 24 / 25),
            25: 0.1, 26: 0.1 * 74 / 75, 50: 0.1 * 50 / 75, 99: 0.1 / 75, 100: 0.0}
    for step, lr in want.items():
        assert lrs[step] == pytest.approx(lr, abs=1e-12), step
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 25
    # 3 steps: warm-up takes max(1, int(0.75)) = 1 step
    assert _lrs("onecycle", 1.0, 3) == pytest.approx([0.1, 1.0, 0.5, 0.0])


def test_cosine_and_constant_schedules_by_hand():
    lrs = _lrs("cosine", 0.1, 100)
    for step in (0, 25, 50, 75, 100):
        assert lrs[step] == pytest.approx(0.05 * (1 + math.cos(math.pi * step / 100)), abs=1e-9), step
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler(optimizer, "constant", 0.1, 100) is None


def test_fit_gives_each_step_its_step_seed_and_steps_the_schedule_per_batch():
    """The loop hands the task (run seed, epoch, step) for every batch, the key every random draw
    of a task derives from, and steps the schedule once per batch (the logged lr is the epoch end's)."""
    from longtail.data.loader import BatchLoader
    from longtail.engine import FitOptions, fit

    seeds = []

    class Recording:
        def start_epoch(self, epoch):
            pass

        def training_loss(self, model, x, y, step_seed):
            seeds.append(step_seed)
            return torch.nn.functional.cross_entropy(model(x.flatten(1)), y)

        def evaluate(self, model, loader, precision):
            return {"loss": 0.0, "score": 0.0}

    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    train = BatchLoader(images, torch.arange(10) % 2, 4, mean=[0.5], std=[0.25], shuffle=True, seed=5)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, "onecycle", 0.1, 2 * len(train))  # 6 steps, warm-up 1
    state = fit(model, Recording(), train, train, optimizer, scheduler,
                FitOptions(epochs=2, precision="fp32", device=torch.device("cpu"), seed=5, progress=False))
    assert seeds == [(5, 0, 0), (5, 0, 1), (5, 0, 2), (5, 1, 0), (5, 1, 1), (5, 1, 2)]
    # after step 3 of 6: (6 - 3) / (6 - 1) of the peak; after step 6: 0
    assert [row["lr"] for row in state.history] == pytest.approx([0.1 * 3 / 5, 0.0])


def test_lt_schedule_is_cao_et_al_staircase_at_the_boundary_steps():
    # 2 steps per epoch over the 200-epoch grid: epoch e covers steps 2e and 2e + 1
    lrs = _lrs("lt", 0.1, 400)
    want = {0: 0.02, 1: 0.02, 2: 0.04, 7: 0.08, 8: 0.1, 9: 0.1, 10: 0.1,  # lr * (e + 1) / 5, e = 0..4
            319: 0.1, 320: 0.001, 359: 0.001, 360: 1e-5, 399: 1e-5}  # x0.01 from epoch 161, x0.0001 from 181
    assert {s: lrs[s] for s in want} == pytest.approx(want)
    # another length keeps the proportions: 20 epochs of 1 step, the first (0.5 grid epochs) at lr/5
    short = _lrs("lt", 0.1, 20)
    assert short[0] == pytest.approx(0.02) and short[15] == pytest.approx(0.1) and short[16] == pytest.approx(0.001)
    assert short[18] == pytest.approx(1e-5)


def test_lt_recipe_uses_plain_momentum_as_cao_et_al():
    # Cao et al.'s CIFAR code builds torch.optim.SGD(momentum=0.9) without Nesterov; the fast recipe's
    # "sgd" is Nesterov's. A recipe or registry slip would change every lt figure silently.
    from longtail.config import RECIPES
    from longtail.engine import build_optimizer

    model = torch.nn.Linear(3, 2)
    lt = build_optimizer(model, RECIPES.get_entry("lt")["optimizer"], 0.1, 2e-4, 0.9)
    fast = build_optimizer(model, RECIPES.get_entry("fast")["optimizer"], 0.1, 5e-4, 0.9)
    assert lt.param_groups[0]["nesterov"] is False and lt.param_groups[0]["momentum"] == 0.9
    assert lt.param_groups[0]["weight_decay"] == 2e-4
    assert fast.param_groups[0]["nesterov"] is True
