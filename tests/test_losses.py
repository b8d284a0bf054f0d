"""Every loss against a hand computation on a 3-class example, its parameters, and that a few
optimisation steps reduce it."""

from __future__ import annotations

import math

import pytest
import torch

from longtail.cli import main
from longtail.errors import LongtailError
from longtail.losses import (LOSSES, FocalLoss, LDAMLoss, LossContext, build_loss, class_balanced_weights,
                             inverse_frequency_weights)

LOGITS = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [0.0, 0.3, 1.2], [1.0, -0.5, 0.4]]
TARGETS = [0, 1, 2, 2]
COUNTS = [100, 10, 1]


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def ce(row, y):
    return -math.log(softmax(row)[y])


def loss(name, params=None, counts=COUNTS, epochs=10, smoothing=0.0):
    module = build_loss(name, LossContext(torch.tensor(counts), epochs, smoothing, params or {}))
    return float(module(torch.tensor(LOGITS), torch.tensor(TARGETS))), module


def mean(values):
    return sum(values) / len(values)


def test_ce_is_the_mean_negative_log_likelihood():
    assert loss("ce")[0] == pytest.approx(mean([ce(r, y) for r, y in zip(LOGITS, TARGETS)]), rel=1e-6)


def test_weighted_uses_the_seeds_weights_with_each_reduction():
    w = [111 / 100, 111 / 10, 111 / 1]  # sum N / N_j
    assert inverse_frequency_weights(torch.tensor(COUNTS)).tolist() == pytest.approx(w)
    terms = [w[y] * ce(r, y) for r, y in zip(LOGITS, TARGETS)]
    total_w = sum(w[y] for y in TARGETS)
    assert loss("weighted")[0] == pytest.approx(sum(terms) / total_w, rel=1e-6)
    assert loss("weighted", {"reduction": "sum"})[0] == pytest.approx(sum(terms), rel=1e-6)
    assert loss("weighted", {"reduction": "mean"})[0] == pytest.approx(mean(terms), rel=1e-6)


def cb_weights(beta):
    w = [(1 - beta) / (1 - beta ** n) for n in COUNTS]
    return [3 * v / sum(w) for v in w]


def test_class_balanced_weights_are_inverse_effective_numbers_summing_to_c():
    assert class_balanced_weights(torch.tensor(COUNTS), 0.9999).tolist() == pytest.approx(cb_weights(0.9999), rel=1e-6)
    assert sum(class_balanced_weights(torch.tensor(COUNTS), 0.9).tolist()) == pytest.approx(3)
    # beta = 0 treats every class alike
    assert class_balanced_weights(torch.tensor(COUNTS), 0.0).tolist() == pytest.approx([1, 1, 1])


def test_cb_weights_each_sample_and_averages_over_the_batch():
    w = cb_weights(0.9999)
    assert loss("cb")[0] == pytest.approx(mean([w[y] * ce(r, y) for r, y in zip(LOGITS, TARGETS)]), rel=1e-5)
    w = cb_weights(0.99)
    focal = [w[y] * (1 - softmax(r)[y]) ** 1.5 * ce(r, y) for r, y in zip(LOGITS, TARGETS)]
    assert loss("cb-softmax-focal", {"beta": 0.99, "gamma": 1.5})[0] == pytest.approx(mean(focal), rel=1e-5)


def test_cb_takes_no_gamma_and_names_the_focal_losses():
    with pytest.raises(LongtailError, match="'cb-focal' .*'cb-softmax-focal'") as info:
        loss("cb", {"gamma": 1.0})
    assert "\n" not in str(info.value)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def cb_focal_by_hand(beta, gamma):
    """Cui et al.'s sigmoid form written out per element: w_y * (1 - p_t)^gamma * -log p_t with
    p_t = sigmoid(z) for the target class and 1 - sigmoid(z) for the others, summed, over B."""
    w = cb_weights(beta)
    total = 0.0
    for row, y in zip(LOGITS, TARGETS):
        for c, z in enumerate(row):
            p_t = sigmoid(z) if c == y else 1 - sigmoid(z)
            total += w[y] * (1 - p_t) ** gamma * -math.log(p_t)
    return total / len(TARGETS)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_cb_focal_is_the_authors_sigmoid_focal_loss(gamma):
    module = build_loss("cb-focal", LossContext(torch.tensor(COUNTS), params={"beta": 0.99, "gamma": gamma}))
    got = module(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(cb_focal_by_hand(0.99, gamma), rel=1e-6)  # weights are stored in float32
    assert loss("cb-focal")[0] == pytest.approx(cb_focal_by_hand(0.9999, 1.0), rel=1e-5)  # the defaults


def test_cb_focal_starts_the_last_linear_bias_at_minus_log_c_minus_one():
    from longtail.losses import init_output_bias

    module = build_loss("cb-focal", LossContext(torch.tensor([5, 4, 3, 2, 1])))
    assert module.init_bias == pytest.approx(-math.log(4))
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    assert init_output_bias(model, module)
    assert model[2].bias.tolist() == pytest.approx([-math.log(4)] * 5) and model[0].bias.abs().sum() > 0
    # then every sigmoid starts near 1/C when the weights are small
    torch.nn.init.zeros_(model[2].weight)
    assert torch.sigmoid(model(torch.randn(2, 3))).flatten().tolist() == pytest.approx([0.2] * 10)
    assert not init_output_bias(model, build_loss("ce", LossContext(torch.tensor([5, 4, 3, 2, 1]))))
    # a cosine head has no bias: nothing is set, and the hidden Linear before it is left alone
    from longtail.models.heads import CosineLinear

    cosine = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), CosineLinear(8, 5))
    hidden = cosine[0].bias.clone()
    assert not init_output_bias(cosine, module) and torch.equal(cosine[0].bias, hidden)


def test_focal_down_weights_easy_samples():
    want = mean([(1 - softmax(r)[y]) ** 2 * ce(r, y) for r, y in zip(LOGITS, TARGETS)])
    assert loss("focal")[0] == pytest.approx(want, rel=1e-6)
    want = mean([(1 - softmax(r)[y]) ** 0.5 * ce(r, y) for r, y in zip(LOGITS, TARGETS)])
    assert loss("focal", {"gamma": 0.5})[0] == pytest.approx(want, rel=1e-6)


def test_focal_with_gamma_zero_is_label_smoothed_cross_entropy():
    x, y = torch.tensor(LOGITS), torch.tensor(TARGETS)
    got = FocalLoss(0.0, label_smoothing=0.1)(x, y)
    assert float(got) == pytest.approx(float(torch.nn.functional.cross_entropy(x, y, label_smoothing=0.1)), rel=1e-6)
    # with gamma: -sum_j q_j (1 - p_j)^gamma log p_j, q = 0.9 one-hot + 0.1 / 3
    q = lambda j, t: 0.9 * (j == t) + 0.1 / 3  # noqa: E731
    want = mean([-sum(q(j, t) * (1 - softmax(r)[j]) ** 2 * math.log(softmax(r)[j]) for j in range(3))
                 for r, t in zip(LOGITS, TARGETS)])
    assert float(FocalLoss(2.0, label_smoothing=0.1)(x, y)) == pytest.approx(want, rel=1e-6)


def test_ldam_margins_and_scale():
    value, module = loss("ldam-drw")
    quarter = [n ** -0.25 for n in COUNTS]
    margins = [0.5 * m / max(quarter) for m in quarter]  # n^(-1/4), largest 0.5
    assert module.margins.tolist() == pytest.approx(margins, rel=1e-6)
    assert margins == pytest.approx([0.5 / 100 ** 0.25, 0.5 / 10 ** 0.25, 0.5])

    def ldam(row, y):
        shifted = [30 * (v - (margins[y] if j == y else 0)) for j, v in enumerate(row)]
        return ce(shifted, y)

    assert value == pytest.approx(mean([ldam(r, y) for r, y in zip(LOGITS, TARGETS)]), rel=1e-5)


def test_ldam_drw_switches_to_class_balanced_weights_at_eighty_percent():
    _, module = loss("ldam-drw", epochs=10)
    assert module.drw_epoch == 8
    x, y = torch.tensor(LOGITS), torch.tensor(TARGETS)
    module.set_epoch(7)
    before = float(module(x, y))
    module.set_epoch(8)
    after = float(module(x, y))
    quarter = [n ** -0.25 for n in COUNTS]
    margins = [0.5 * m / max(quarter) for m in quarter]
    w = cb_weights(0.9999)
    terms = [ce([30 * (v - (margins[t] if j == t else 0)) for j, v in enumerate(r)], t) for r, t in zip(LOGITS, TARGETS)]
    assert before == pytest.approx(mean(terms), rel=1e-5)
    # F.cross_entropy's weighted mean: sum w_y l / sum w_y
    assert after == pytest.approx(sum(w[t] * v for t, v in zip(TARGETS, terms)) / sum(w[t] for t in TARGETS), rel=1e-5)
    _, module = loss("ldam-drw", {"drw_epoch": 2, "s": 10, "max_margin": 0.3}, epochs=10)
    assert module.drw_epoch == 2 and module.s == 10 and max(module.margins.tolist()) == pytest.approx(0.3)


def test_logit_adjusted_loss_adds_tau_log_prior():
    prior = [n / 111 for n in COUNTS]
    for tau in (1.0, 0.5):
        want = mean([ce([v + tau * math.log(prior[j]) for j, v in enumerate(r)], y) for r, y in zip(LOGITS, TARGETS)])
        assert loss("logit-adjust", {"tau": tau})[0] == pytest.approx(want, rel=1e-6)
    # balanced softmax is tau = 1
    assert loss("balanced-softmax")[0] == pytest.approx(loss("logit-adjust")[0], rel=1e-7)


def test_posthoc_adjustment_trains_plain_and_exposes_tau_log_prior():
    value, module = loss("logit-adjust-posthoc", {"tau": 2.0})
    assert value == pytest.approx(loss("ce")[0], rel=1e-7)
    assert module.posthoc_adjustment.tolist() == pytest.approx([2 * math.log(n / 111) for n in COUNTS], rel=1e-6)


def test_posthoc_adjustment_moves_predictions_to_rare_classes():
    from longtail.tasks.classify import confusion
    from longtail.data.loader import BatchLoader

    _, module = loss("logit-adjust-posthoc")
    images = torch.zeros(1, 1, 1, 1, dtype=torch.uint8)
    loader = BatchLoader(images, torch.tensor([2]), 1, mean=[0.0], std=[1.0], channels_last=False)
    model = lambda x: torch.tensor([[1.0, 0.0, -2.0]])  # noqa: E731 - argmax 0; adjusted: 1+2.2, 0+0.7, -2+4.7
    model.train = model.eval = lambda *a: None
    model.training = False
    plain, _ = confusion(model, loader, "fp32", 3)
    adjusted, _ = confusion(model, loader, "fp32", 3, module.posthoc_adjustment)
    assert plain[2].tolist() == [1, 0, 0] and adjusted[2].tolist() == [0, 0, 1]  # true class 2: predicted 0, then 2


@pytest.mark.parametrize("name, params, message", [
    ("focal", {"gama": 2}, "loss 'focal' has no parameter 'gama' \\(it takes gamma\\)"),
    ("ce", {"gamma": 2}, "takes no parameters"),
    ("focal", {"gamma": -1}, "must not be negative"),
    ("focal", {"gamma": "two"}, "must be a number"),
    ("cb", {"beta": 1.0}, "beta must be in"),
    ("weighted", {"reduction": "median"}, "reduction must be one of"),
    ("ldam-drw", {"s": 0}, "must be positive"),
    ("ldam-drw", {"drw_epoch": 2.5}, "whole epoch"),
    ("hinge", {}, "unknown loss 'hinge'"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(LongtailError, match=message) as info:
        build_loss(name, LossContext(torch.tensor(COUNTS), 10, 0.0, params))
    assert "\n" not in str(info.value)


def test_a_class_without_samples_is_an_error():
    for name in ("weighted", "cb", "ldam-drw", "logit-adjust", "logit-adjust-posthoc"):
        with pytest.raises(LongtailError, match="at least one training sample"):
            build_loss(name, LossContext(torch.tensor([5, 0, 3])))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_few_steps_reduce_every_loss(name):
    g = torch.Generator().manual_seed(0)
    counts = [200, 40, 8]
    y = torch.arange(3).repeat_interleave(torch.tensor(counts))
    x = torch.randn(len(y), 2, generator=g) * 0.7 + torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])[y]
    module = build_loss(name, LossContext(torch.tensor(counts), epochs=5, label_smoothing=0.05))
    module.set_epoch(4) if hasattr(module, "set_epoch") else None  # LDAM: with its DRW weights on
    model = torch.nn.Linear(2, 3)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)  # scale-free steps: LDAM's s = 30 is no special case
    start = module(model(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        module(model(x), y).backward()
        opt.step()
    assert module(model(x), y).item() < 0.8 * start


def test_losses_are_standalone_modules_with_the_gradient_of_their_formula():
    ldam = LDAMLoss(torch.tensor(COUNTS))  # no DRW unless asked
    assert isinstance(ldam, torch.nn.Module) and not ldam.reweighting
    logits = torch.tensor(LOGITS, requires_grad=True)
    FocalLoss(gamma=2)(logits, torch.tensor(TARGETS)).backward()
    # the same formula written out independently in float64: mean_i -(1 - p_iy)^2 log p_iy
    z = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(z, dim=1)[torch.arange(4), torch.tensor(TARGETS)]
    (-(1 - p) ** 2 * p.log()).mean().backward()
    assert torch.allclose(logits.grad.double(), z.grad, atol=1e-6)
    assert z.grad.abs().max() > 0.01  # not a vacuous zero gradient
    assert torch.allclose(logits.grad.sum(dim=1), torch.zeros(4), atol=1e-6)  # softmax: shifts do not matter


def test_cli_names_an_unknown_loss_parameter(tiny_folder, tmp_path, capsys):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=8)
    rc = main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--loss", "focal",
               "--loss-param", "gama=2", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "'gama'" in err


def test_sample_weight_scales_each_term_and_keeps_the_normaliser():
    w = [111 / 100, 111 / 10, 111 / 1]
    s = [1.0, 0.5, 0.0, 0.25]
    terms = [si * w[y] * ce(r, y) for si, r, y in zip(s, LOGITS, TARGETS)]
    _, module = loss("weighted")
    got = module(torch.tensor(LOGITS), torch.tensor(TARGETS), sample_weight=torch.tensor(s))
    assert float(got) == pytest.approx(sum(terms) / sum(w[y] for y in TARGETS), rel=1e-6)  # not / sum s w
    _, module = loss("focal", {"gamma": 0})
    got = module(torch.tensor(LOGITS), torch.tensor(TARGETS), sample_weight=torch.tensor(s))
    assert float(got) == pytest.approx(mean([si * ce(r, y) for si, r, y in zip(s, LOGITS, TARGETS)]), rel=1e-6)


WITH_REDUCTION = ("weighted", "cb", "cb-softmax-focal")  # the losses that take a reduction parameter


@pytest.mark.parametrize("name, params", [(name, {}) for name in sorted(LOSSES)]
                         + [(name, {"reduction": r}) for name in WITH_REDUCTION for r in ("sum", "mean")])
def test_every_loss_takes_a_sample_weight_that_scales_it(name, params):
    module = build_loss(name, LossContext(torch.tensor(COUNTS), 5, 0.1, params))
    if hasattr(module, "set_epoch"):
        module.set_epoch(4)  # LDAM-DRW with its class weights on
    z, y = torch.tensor(LOGITS), torch.tensor(TARGETS)
    plain = float(module(z, y))
    assert float(module(z, y, sample_weight=torch.ones(4))) == pytest.approx(plain, rel=1e-6)
    assert float(module(z, y, sample_weight=torch.full((4,), 0.3))) == pytest.approx(0.3 * plain, rel=1e-6)
