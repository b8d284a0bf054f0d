"""The jigsaw pretext task: tiles, Sinkhorn, decoding, metrics, loss, the net, and a short run."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from longtail.errors import LongtailError
from longtail.jigsaw import decode, jigsaw_metrics, make_puzzles, permutation_bce, reassemble, sinkhorn
from longtail.jigsaw.decode import all_permutations
from longtail.jigsaw.metrics import confidence, position_accuracy, puzzle_accuracy
from longtail.jigsaw.sinkhorn import DEFAULT_ITERS, log_sinkhorn
from longtail.jigsaw.objective import JigsawObjective
from longtail.jigsaw.tiles import (TileOptions, cut_tiles, jitter_tiles, join_tiles, normalize_tiles,
                                   random_grayscale, tile_size)
from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig
from longtail.models.seed_cnn import SeedCNN


def _images(n=6, c=3, size=32, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


# --- tiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid,size", [(2, 32), (3, 30), (4, 32)])
def test_tiles_are_the_grid_cells_in_row_major_order(grid, size):
    x = _images(size=size)
    tiles = cut_tiles(x, grid)
    t = size // grid
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        assert torch.equal(tiles[:, k], x[:, :, r * t:(r + 1) * t, c * t:(c + 1) * t])
    assert torch.equal(join_tiles(tiles, grid), x)


@pytest.mark.parametrize("grid,size", [(2, 32), (3, 30)])
def test_shuffled_tiles_reassemble_exactly(grid, size):
    x = _images(n=16, size=size)
    tiles, target = make_puzzles(x, grid, torch.Generator().manual_seed(1))
    assert tiles.shape == (16, grid * grid, 3, size // grid, size // grid)
    assert torch.equal(reassemble(tiles, target, grid), x)
    # shuffled tile i is the cell its label row points at
    cells = cut_tiles(x, grid)
    positions = target.argmax(dim=2)
    for b in range(16):
        for i in range(grid * grid):
            assert torch.equal(tiles[b, i], cells[b, positions[b, i]])


def test_labels_are_permutation_matrices_and_every_permutation_occurs():
    x = torch.zeros(2400, 1, 4, 4)
    _, target = make_puzzles(x, 2, torch.Generator().manual_seed(0))
    assert set(target.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(target.sum(dim=1), torch.ones(2400, 4))
    assert torch.equal(target.sum(dim=2), torch.ones(2400, 4))
    # 24 permutations, 100 expected each; a fair draw stays within +-50 (p < 1e-6 per cell)
    codes = (target.argmax(dim=2) * torch.tensor([64, 16, 4, 1])).sum(dim=1)
    counts = torch.bincount(codes, minlength=256)
    counts = counts[counts > 0]
    assert counts.numel() == 24 and counts.min() > 50 and counts.max() < 150


def test_same_generator_seed_gives_the_same_puzzles():
    x = _images()
    opts = TileOptions(gap=2, tile_norm=True, grayscale=0.5)
    a = make_puzzles(x, 2, torch.Generator().manual_seed(5), opts)
    b = make_puzzles(x, 2, torch.Generator().manual_seed(5), opts)
    c = make_puzzles(x, 2, torch.Generator().manual_seed(6), opts)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("h,w,grid", [(32, 32, 3), (32, 30, 4), (32, 32, 1)])
def test_grid_must_divide_the_image(h, w, grid):
    with pytest.raises(LongtailError, match="grid"):
        tile_size(h, w, grid)


def test_grayscale_with_certainty_gives_luma_in_every_channel():
    tiles = cut_tiles(_images(), 2)
    grey = random_grayscale(tiles, 1.0, torch.Generator().manual_seed(0))
    r, g, b = tiles.unbind(dim=2)
    expected = (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(2)  # ITU-R 601 luma, torchvision's weights
    assert torch.allclose(grey, expected.expand_as(tiles), atol=1e-6)
    assert torch.equal(random_grayscale(tiles, 0.0, torch.Generator().manual_seed(0)), tiles)


def test_tile_norm_gives_zero_mean_unit_std_per_tile_and_channel():
    out = normalize_tiles(cut_tiles(_images() * 5 + 3, 2))
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(6, 4, 3), atol=1e-5)
    assert torch.allclose(out.std(dim=(-2, -1), unbiased=False), torch.ones(6, 4, 3), atol=1e-3)


def test_gap_without_generator_is_the_centre_crop_resized_back():
    tiles = cut_tiles(_images(), 2)
    out = jitter_tiles(tiles, 4, None)
    crop = tiles.reshape(-1, 3, 16, 16)[..., 2:14, 2:14]
    expected = TF.resize(crop, [16, 16], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    assert torch.allclose(out, expected.reshape(out.shape), atol=1e-6)


def test_gap_with_generator_is_some_crop_resized_back():
    tiles = cut_tiles(_images(n=2), 2)
    out = jitter_tiles(tiles, 2, torch.Generator().manual_seed(3)).reshape(-1, 3, 16, 16)
    flat = tiles.reshape(-1, 3, 16, 16)
    for m in range(flat.shape[0]):
        candidates = [TF.resize(flat[m, :, dy:dy + 14, dx:dx + 14], [16, 16], antialias=False)
                      for dy in range(3) for dx in range(3)]
        assert any(torch.allclose(out[m], cand, atol=1e-6) for cand in candidates)


def test_gap_must_leave_a_tile():
    with pytest.raises(LongtailError, match="gap"):
        jitter_tiles(cut_tiles(_images(), 2), 16, None)


# --- sinkhorn ---------------------------------------------------------------------------------


def _reference_sinkhorn(scores: torch.Tensor, n_iters: int, tau: float) -> torch.Tensor:
    """Plain alternating row/column normalization of exp(scores / tau), in float64."""
    p = torch.exp(scores.double() / tau)
    for _ in range(n_iters):
        p = p / p.sum(dim=-1, keepdim=True)
        p = p / p.sum(dim=-2, keepdim=True)
    return p


@pytest.mark.parametrize("n,tau,n_iters", [(4, 1.0, 20), (3, 0.5, 5), (9, 1.0, 10), (4, 0.3, 1)])
def test_sinkhorn_matches_plain_normalization(n, tau, n_iters):
    scores = torch.randn(64, n, n, generator=torch.Generator().manual_seed(n))
    assert torch.allclose(sinkhorn(scores, n_iters, tau).double(), _reference_sinkhorn(scores, n_iters, tau),
                          atol=1e-5)


def test_sinkhorn_rows_and_columns_sum_to_one_at_the_default_iterations():
    y = sinkhorn(torch.randn(1000, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert (y.sum(dim=-1) - 1).abs().max() < 1e-3
    assert (y.sum(dim=-2) - 1).abs().max() < 1e-3
    assert DEFAULT_ITERS == 20


def test_sinkhorn_has_no_overflow_at_small_tau_and_huge_scores():
    scores = (torch.randn(256, 4, 4, generator=torch.Generator().manual_seed(0)) * 1e3).requires_grad_()
    log_y = log_sinkhorn(scores, tau=0.01)
    y = log_y.exp()
    assert torch.isfinite(y).all() and (y >= 0).all()
    assert torch.allclose(y.sum(dim=-2), torch.ones(256, 4), atol=1e-5)
    permutation_bce(log_y, torch.eye(4).expand(256, 4, 4)).backward()
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("kwargs,match", [({"tau": 0.0}, "tau"), ({"n_iters": 0}, "iteration")])
def test_sinkhorn_refuses_bad_settings(kwargs, match):
    with pytest.raises(LongtailError, match=match):
        sinkhorn(torch.zeros(1, 2, 2), **kwargs)
    with pytest.raises(LongtailError, match="square"):
        sinkhorn(torch.zeros(1, 2, 3))


# --- decoding ---------------------------------------------------------------------------------


def _brute_force(matrix: torch.Tensor) -> list[int]:
    n = matrix.shape[0]
    return list(max(itertools.permutations(range(n)), key=lambda p: sum(float(matrix[i, p[i]]) for i in range(n))))


@pytest.mark.parametrize("n", [3, 4])
def test_hungarian_and_exhaustive_equal_brute_force(n):
    scores = torch.randn(200, n, n, generator=torch.Generator().manual_seed(n))
    expected = torch.tensor([_brute_force(m) for m in scores])
    assert torch.equal(decode(scores, "hungarian"), expected)
    assert torch.equal(decode(scores, "exhaustive"), expected)


def test_argmax_takes_each_rows_best_and_may_repeat():
    scores = torch.tensor([[[0.9, 0.1], [0.8, 0.2]]])
    assert decode(scores, "argmax").tolist() == [[0, 0]]
    # the two permutations score 0.9 + 0.2 = 1.1 (identity) and 0.1 + 0.8 = 0.9 (swap)
    assert decode(scores, "hungarian").tolist() == [[0, 1]]


def test_all_permutations_are_n_factorial_distinct_rows():
    perms = all_permutations(4)
    assert perms.shape == (24, 4) and len({tuple(p) for p in perms.tolist()}) == 24


def test_decode_refuses_bad_input():
    with pytest.raises(LongtailError, match="unknown decoding method"):
        decode(torch.zeros(1, 2, 2), "greedy")
    with pytest.raises(LongtailError, match="exhaustive"):
        decode(torch.zeros(1, 9, 9), "exhaustive")
    with pytest.raises(LongtailError, match="shape"):
        decode(torch.zeros(2, 3), "argmax")


# --- metrics and loss -------------------------------------------------------------------------


def test_accuracies_on_hand_made_predictions():
    true = torch.tensor([[0, 1, 2, 3]] * 3)
    predicted = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [0, 0, 2, 3]])
    assert position_accuracy(predicted, true) == pytest.approx((4 + 2 + 3) / 12)
    assert puzzle_accuracy(predicted, true) == pytest.approx(1 / 3)


def test_confidence_is_the_mean_probability_of_the_true_positions():
    probs = torch.tensor([[[0.8, 0.2], [0.2, 0.8]], [[0.6, 0.4], [0.4, 0.6]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    # puzzle 1: (0.8 + 0.8) / 2 = 0.8; puzzle 2: (0.4 + 0.4) / 2 = 0.4
    assert confidence(probs, target) == pytest.approx(0.6)


def test_jigsaw_metrics_for_both_decoders_on_a_hand_made_case():
    # Puzzle 1: rows 0 and 1 both prefer position 0; the best permutation is the identity
    # (0.5 * 0.4 * 0.75 = 0.150 beats the swap's 0.4 * 0.45 * 0.75 = 0.135 and every other).
    # Puzzle 2: the argmax is already a permutation, with tiles 0 and 1 swapped.
    y1 = torch.tensor([[0.5, 0.4, 0.1], [0.45, 0.4, 0.15], [0.05, 0.2, 0.75]])
    y2 = torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    target = torch.eye(3).expand(2, 3, 3)
    m = jigsaw_metrics(torch.stack([y1, y2]).log(), target)
    assert decode(torch.stack([y1, y2]).log(), "argmax").tolist() == [[0, 0, 2], [1, 0, 2]]
    assert decode(torch.stack([y1, y2]).log(), "hungarian").tolist() == [[0, 1, 2], [1, 0, 2]]
    assert m["position_acc_argmax"] == pytest.approx(3 / 6)
    assert m["puzzle_acc_argmax"] == 0.0
    assert m["position_acc_hungarian"] == pytest.approx(4 / 6)
    assert m["puzzle_acc_hungarian"] == pytest.approx(0.5)
    assert m["confidence"] == pytest.approx(((0.5 + 0.4 + 0.75) / 3 + (0.1 + 0.1 + 0.8) / 3) / 2)


def test_permutation_bce_against_a_hand_computation():
    y = torch.tensor([[[0.9, 0.3], [0.2, 0.6]]])
    target = torch.eye(2).unsqueeze(0)
    expected = -(math.log(0.9) + math.log(1 - 0.3) + math.log(1 - 0.2) + math.log(0.6)) / 4
    assert float(permutation_bce(y.log(), target)) == pytest.approx(expected, rel=1e-6)


def test_loss_is_fp32_under_bf16_autocast_and_reproducible_per_step():
    task = JigsawObjective(grid=2)
    model = JigsawNet()
    x = _images(n=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.training_loss(model, x, None, (0, 0, 0))
    assert loss.dtype == torch.float32
    same = task.training_loss(model, x, None, (0, 0, 0))
    assert torch.equal(same, task.training_loss(model, x, None, (0, 0, 0)))
    # the puzzles are drawn from (seed, epoch, step): another step, epoch or seed, other puzzles
    for other in ((0, 0, 1), (0, 1, 0), (1, 0, 0)):
        assert not torch.equal(same, task.training_loss(model, x, None, other)), other


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model, task, x = JigsawNet(), JigsawObjective(grid=2), _images(n=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = task.training_loss(model, x, None, (0, 0, 0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.05


# --- the network ------------------------------------------------------------------------------


def test_jigsaw_net_parameter_count_matches_table_1():
    counts = {
        "conv1": 3 * 32 * 9 + 32, "conv2": 32 * 64 * 9 + 64, "conv3": 64 * 64 * 9 + 64, "bn": 2 * 64,
        "fc1": 1024 * 64 + 64, "fc2": 64 * 256 + 256, "combine": 4 * 256 * 256 + 256, "score": 256 * 16 + 16,
    }
    model = JigsawNet()
    for name, expected in counts.items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == expected, name
    assert sum(p.numel() for p in model.parameters()) == sum(counts.values())


def test_trunk_layers_have_the_classifiers_names_and_shapes():
    jig, cls = JigsawNet().state_dict(), SeedCNN().state_dict()
    for key in ("conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc1.bias"):
        assert jig[key].shape == cls[key].shape


def test_tiles_are_scored_by_one_batched_trunk_in_tile_order():
    torch.manual_seed(0)
    model = JigsawNet(JigsawNetConfig(grid=3, tile_size=(10, 10))).eval()
    tiles = torch.randn(5, 9, 3, 10, 10)
    with torch.no_grad():
        per_tile = torch.cat([model.trunk(tiles[:, k]) for k in range(9)], dim=1)
        expected = model.score(torch.relu(model.combine(per_tile))).reshape(5, 9, 9)
        assert torch.allclose(model(tiles), expected, atol=1e-5)


def test_jigsaw_net_refuses_the_wrong_number_of_tiles_and_tiny_tiles():
    with pytest.raises(LongtailError, match="tiles"):
        JigsawNet()(torch.zeros(1, 9, 3, 16, 16))
    with pytest.raises(LongtailError, match="too small"):
        JigsawNet(JigsawNetConfig(tile_size=(2, 2)))


# --- evaluation and a short real run ----------------------------------------------------------


def test_evaluation_puzzles_are_the_same_every_time():
    from longtail.data.loader import BatchLoader

    images = (torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    loader = BatchLoader(images, torch.zeros(40, dtype=torch.long), 16, mean=[0.5] * 3, std=[0.25] * 3)
    task, model = JigsawObjective(grid=2, tile_options=TileOptions(gap=2, tile_norm=True, grayscale=0.5)), JigsawNet()
    first, second = task.evaluate(model, loader, "fp32"), task.evaluate(model, loader, "fp32")
    assert first == second
    assert first["score"] == first["puzzle_acc_hungarian"]


REQUIRED_ROW_KEYS = {"epoch", "lr", "train_loss", "seconds", "images_per_s", "val_loss", "val_position_acc_argmax",
                     "val_puzzle_acc_argmax", "val_position_acc_hungarian", "val_puzzle_acc_hungarian",
                     "val_confidence", "val_kendall_tau_hungarian", "val_puzzle_error_hungarian",
                     "val_kendall_tau_argmax", "val_puzzle_error_argmax"}


def test_one_epoch_on_2000_images_beats_chance(cifar, tmp_path):
    from longtail.config import resolve_pretrain_config
    from longtail.run import run as run_pretraining
    from longtail.runs import load_checkpoint

    cfg = resolve_pretrain_config(base=dict(data="cifar", out=str(tmp_path / "run"), epochs=1, limit_train=2000,
                                            val_size=500, limit_test=500, quiet=True, precision="fp32"))
    summary = run_pretraining(cfg, cifar)
    assert summary["val_position_acc_hungarian"] > 0.25 and summary["test_position_acc_hungarian"] > 0.25
    assert summary["val_position_acc_argmax"] > 0.25
    # 1/24 of random permutations would be solved by chance
    assert summary["test_puzzle_acc_hungarian"] > 1 / 24
    assert summary["n_train"] == 2000 and summary["n_test"] == 500
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and REQUIRED_ROW_KEYS <= rows[0].keys()
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["kind"] == "jigsaw" and ckpt["arch"]["name"] == "JigsawNet" and ckpt["arch"]["grid"] == 2
    # a finished run is returned as it is by --resume
    assert run_pretraining(resolve_pretrain_config(base={**cfg.to_dict(), "resume": True}), cifar) == summary


def test_pretrain_config_recipes_and_checks(tmp_path):
    from longtail.config import resolve_pretrain_config

    seed = resolve_pretrain_config()
    assert (seed.optimizer, seed.lr, seed.batch_size, seed.epochs, seed.gap, seed.tile_norm) == \
        ("adam", 1e-3, 64, 10, 0, False)
    improved = resolve_pretrain_config(cli={"recipe": "improved", "lr": 0.01})
    assert improved.tile_norm and improved.gap > 0 and improved.grayscale > 0 and improved.lr == 0.01
    toml = tmp_path / "p.toml"
    toml.write_text('recipe = "improved"\nepochs = 3\n')
    assert resolve_pretrain_config(cli={"epochs": 2}, toml_path=toml).epochs == 2
    for bad, match in [({"recipe": "best"}, "recipe"), ({"task": "colorize"}, "task"), ({"tau": 0}, "tau"),
                       ({"grayscale": 1.5}, "grayscale"), ({"grid": 1}, "grid"), ({"tile_size": 3}, "unknown key")]:
        with pytest.raises(LongtailError, match=match):
            resolve_pretrain_config(cli=bad)


class _Crash(Exception):
    pass


def test_a_run_stopped_mid_epoch_resumes_to_the_same_numbers(tiny_folder, tmp_path, monkeypatch):
    import longtail.run
    from longtail.config import resolve_pretrain_config
    from longtail.run import run as run_pretraining
    from longtail.runs import load_checkpoint

    folder = tiny_folder(tmp_path / "img", classes=2, per_class=12, size=16)
    settings = dict(data=str(folder), epochs=2, batch_size=8, checkpoint_every=1, quiet=True, precision="fp32",
                    recipe="improved")
    straight = run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "a")}))

    real_fit = longtail.run.fit

    def fit_that_crashes(*args, save, **kwargs):
        calls = []

        def save_then_crash(state):
            save(state)
            calls.append(1)
            if len(calls) == 2:  # after the checkpoint at step 2 of epoch 1
                raise _Crash

        return real_fit(*args, save=save_then_crash, **kwargs)

    monkeypatch.setattr(longtail.run, "fit", fit_that_crashes)
    with pytest.raises(_Crash):
        run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "b")}))
    monkeypatch.setattr(longtail.run, "fit", real_fit)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["fit_state"]["step"] == 2
    resumed = run_pretraining(resolve_pretrain_config(base={**settings, "out": str(tmp_path / "b"), "resume": True}))

    def numbers(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]

    assert numbers("b") == numbers("a")
    assert resumed["test_loss"] == straight["test_loss"]
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- permutation sets (Noroozi & Favaro 2016) --------------------------------------------------


def test_permutation_set_has_k_distinct_members_at_the_pinned_minimum_distance():
    from longtail.jigsaw.permutations import maximal_hamming_permutations, min_pairwise_hamming

    perms = maximal_hamming_permutations(3, 10, seed=0)
    assert perms.shape == (10, 9)
    assert len({tuple(p) for p in perms.tolist()}) == 10
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    # computed once and pinned: greedy max-min from seed 0's first member reaches 8 of 9 positions
    assert min_pairwise_hamming(perms) == 8
    assert perms[0].tolist() == [5, 6, 7, 0, 2, 8, 3, 1, 4]
    # independent check of the distance: plain Python over all pairs
    rows = perms.tolist()
    assert min(sum(a != b for a, b in zip(p, q)) for p, q in itertools.combinations(rows, 2)) == 8
    # the default K=100 set
    assert min_pairwise_hamming(maximal_hamming_permutations(3, 100, seed=0)) == 6


def test_permutation_set_depends_on_the_seed_only():
    from longtail.jigsaw.permutations import maximal_hamming_permutations

    a, b = maximal_hamming_permutations(3, 10, 0), maximal_hamming_permutations(3, 10, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, maximal_hamming_permutations(3, 10, 1))
    # all 24 of a 2x2 grid can be chosen
    assert len({tuple(p) for p in maximal_hamming_permutations(2, 24, 0).tolist()}) == 24


@pytest.mark.parametrize("grid,k,match", [(2, 25, "24 tile orderings"), (3, 362881, "362880"),
                                          (4, 10, "up to a 3x3 grid")])
def test_permutation_set_refuses_impossible_sizes(grid, k, match):
    from longtail.jigsaw.permutations import check_permutation_count

    with pytest.raises(LongtailError, match=match):
        check_permutation_count(grid, k)


def test_pretrain_refuses_more_permutations_than_the_grid_has_in_one_line(capsys, tiny_folder, tmp_path):
    from conftest import one_line_error

    folder = tiny_folder(tmp_path / "img", classes=2, per_class=4, size=16)
    one_line_error(capsys, ["pretrain", "--data", str(folder), "--out", str(tmp_path / "r"), "--jigsaw-head",
                            "classify", "--permutations", "25"], "24 tile orderings")
    one_line_error(capsys, ["pretrain", "--data", str(folder), "--out", str(tmp_path / "r"), "--grid", "3"],
                   "does not divide")


def test_classify_head_run_stores_its_permutation_set(tiny_folder, tmp_path):
    from longtail.config import resolve_pretrain_config
    from longtail.jigsaw.permutations import maximal_hamming_permutations
    from longtail.run import run as run_pretraining
    from longtail.runs import load_checkpoint

    folder = tiny_folder(tmp_path / "img", classes=2, per_class=8, size=24)
    cfg = resolve_pretrain_config(base=dict(data=str(folder), out=str(tmp_path / "run"), epochs=1, batch_size=8,
                                            grid=3, jigsaw_head="classify", permutations=10, quiet=True,
                                            precision="fp32"))
    summary = run_pretraining(cfg)
    expected = maximal_hamming_permutations(3, 10, 0).tolist()
    assert summary["permutations"] == expected and summary["permutation_min_hamming"] == 8
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["permutations"] == expected and ckpt["arch"]["name"] == "JigsawClassifyNet"
    for key in ("permutation_acc", "position_acc_classify", "kendall_tau_classify", "puzzle_error_classify"):
        assert f"test_{key}" in summary and f"val_{key}" in summary
    assert summary["test_puzzle_error_classify"] == pytest.approx(1 - summary["test_permutation_acc"])


def test_classify_objective_labels_name_the_shuffle():
    from longtail.jigsaw.objective import PermutationClassObjective
    from longtail.jigsaw.permutations import maximal_hamming_permutations

    perms = maximal_hamming_permutations(3, 10, 0)
    x = torch.rand(6, 3, 12, 12)
    tiles, classes = PermutationClassObjective(3, perms).puzzles(x, torch.Generator().manual_seed(0), train=True)
    target = permutation_matrices_of(perms[classes])
    assert torch.equal(reassemble(tiles, target, 3), x)


def permutation_matrices_of(positions):
    return torch.nn.functional.one_hot(positions, positions.shape[1]).float()


# --- Gumbel-Sinkhorn's figures (Mena et al. 2018) ----------------------------------------------


def test_kendall_tau_matches_scipy_on_random_permutations():
    from scipy.stats import kendalltau

    from longtail.jigsaw.metrics import kendall_tau

    g = torch.Generator().manual_seed(0)
    true = torch.rand(50, 9, generator=g).argsort(dim=1)
    predicted = torch.rand(50, 9, generator=g).argsort(dim=1)
    predicted[:5] = true[:5]  # some solved
    predicted[5:8] = true[5:8].flip(1)  # some reversed
    expected = sum(kendalltau(p, t).statistic for p, t in zip(predicted.tolist(), true.tolist())) / 50
    assert kendall_tau(predicted, true) == pytest.approx(expected, abs=1e-12)
    assert kendall_tau(true, true) == 1.0
    # argmax decoding may repeat a position: ties, scipy's tau-b
    tied = torch.randint(0, 9, (30, 9), generator=g)
    tied[tied[:, 0] == tied[:, 1], 1] = (tied[tied[:, 0] == tied[:, 1], 0] + 1) % 9  # never all one value
    expected = sum(kendalltau(p, t).statistic for p, t in zip(tied.tolist(), true[:30].tolist())) / 30
    assert kendall_tau(tied, true[:30]) == pytest.approx(expected, abs=1e-12)


def test_jigsaw_metrics_include_kendall_tau_and_puzzle_error():
    true = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    target = torch.nn.functional.one_hot(true, 4).float()
    scores = target.clone()
    scores[1] = torch.nn.functional.one_hot(torch.tensor([1, 0, 2, 3]), 4).float()  # one swap
    out = jigsaw_metrics(torch.log(scores.clamp_min(1e-6)), target)
    # puzzle 2: one discordant pair of six -> tau = (5 - 1) / 6
    assert out["kendall_tau_hungarian"] == pytest.approx((1 + 4 / 6) / 2)
    assert out["puzzle_error_hungarian"] == pytest.approx(0.5) and out["puzzle_error_argmax"] == pytest.approx(0.5)
