#!/usr/bin/env python
"""Mutation check: do the tests catch wrong numbers?

Each entry of MUTATIONS below is one deliberate bug: a file, an exact snippet of its code, what to
put in its place, and the tests that should notice. For each one this script

1. checks that the snippet occurs exactly once in the file (if the code moved or changed, it stops
   and says which mutation to update: a mutation that silently matches nothing tests nothing);
2. applies it to a temporary copy of the repository (src/, tests/, configs/, tools/, pyproject.toml; the
   working tree is never touched), runs the named tests there with pytest (PYTHONPATH=<copy>/src),
   and restores the file;
3. prints one row: ``caught`` when the tests failed, ``MISSED`` when they all passed.

Before any mutation, every test selection runs once on the unmutated copy: a selection that
already fails would "catch" every mutation and prove nothing.

    python tools/mutation_check.py                  # everything (about 8 minutes on 2 shared cores)
    python tools/mutation_check.py --only ldam aug  # mutations whose name contains a word
    python tools/mutation_check.py --list           # the mutations, without running anything

Real CIFAR-10 is found as tests/conftest.py finds it (``LONGTAIL_CIFAR_ZIP``, else
``../shared/data/cifar10-jpeg.zip`` next to the repository). The decoded dataset is cached once
per check in the temporary folder, or in ``LONGTAIL_TEST_CACHE`` when that is set.

Exit status: 0 when every mutation is caught; 1 when one is missed (or its tests ran into an
error); 2 when a snippet does not occur exactly once or the unmutated tests fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "configs", "tools", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest arguments: files, and "-k", "expression" where a file is slow
    why: str = ""


LOADER = "src/longtail/data/loader.py"
AUGMENT = "src/longtail/data/augment.py"
REBALANCE = "src/longtail/data/rebalance.py"
IMBALANCE = "src/longtail/data/imbalance.py"
LOSSES = "src/longtail/losses.py"
METRICS = "src/longtail/metrics.py"

MUTATIONS: list[Mutation] = [
    # -- the three bugs that once slipped through together -----------------------------------------------
    Mutation("normalize-multiplies-by-std", LOADER,
             "x = (x - self.mean) / self.std", "x = (x - self.mean) * self.std",
             ("tests/test_loader.py",), "normalized batches must have mean 0 and std 1"),
    Mutation("augment-ignores-step", LOADER,
             "derived_generator(self.seed, epoch, step, 0xA06)", "derived_generator(self.seed, epoch, 0xA06)",
             ("tests/test_loader.py",), "every batch of an epoch would get the same flips and crops"),
    Mutation("aug-copies-ignore-seed", REBALANCE,
             "_factors(chosen.numel(), g), _factors(chosen.numel(), g)",
             "_factors(chosen.numel(), torch.Generator().manual_seed(0)), "
             "_factors(chosen.numel(), torch.Generator().manual_seed(1))",
             ("tests/test_rebalance.py",), "fixed augmented copies identical for every run seed"),
    # -- more random streams: each must depend on its (seed, epoch, step) ----------------------------------
    Mutation("copy-augment-ignores-step", LOADER,
             "derived_generator(self.seed, epoch, step, 0xC0B)", "derived_generator(self.seed, epoch, 0xC0B)",
             ("tests/test_loader.py", "tests/test_rebalance.py"), "copy-aug copies augmented alike in every batch"),
    Mutation("shuffle-ignores-seed", LOADER,
             "g = derived_generator(self.seed, epoch, 0xD47A)", "g = derived_generator(0, epoch, 0xD47A)",
             ("tests/test_loader.py",), "every seed visits the data in the same order"),
    Mutation("imbalance-draw-ignores-seed", "src/longtail/data/prepare.py",
             "derived_generator(cfg.seed, 0x1B)", "derived_generator(0, 0x1B)",
             ("tests/test_imbalance.py",), "every seed keeps the same samples of the minority classes"),
    Mutation("sampler-ignores-seed", "src/longtail/data/samplers.py",
             "derived_generator(self.seed, self.epoch, 0x5A)", "derived_generator(0, self.epoch, 0x5A)",
             ("tests/test_samplers.py",), "ClassAwareSampler(seed=...) draws the same for every seed"),
    Mutation("fit-step-seed-ignores-step", "src/longtail/engine.py",
             "(options.seed, epoch, state.step)", "(options.seed, epoch, 0)",
             ("tests/test_train.py", "-k", "schedule"), "every batch of an epoch gets the same task draws"),
    Mutation("jigsaw-puzzles-ignore-epoch", "src/longtail/jigsaw/objective.py",
             "make_puzzles(x, self.grid, derived_generator(*step_seed, TRAIN_STREAM)",
             "make_puzzles(x, self.grid, derived_generator(step_seed[0], step_seed[2], TRAIN_STREAM)",
             ("tests/test_jigsaw.py", "-k", "fp32"), "every epoch gets the same training puzzles"),
    Mutation("vflip-flips-horizontally", AUGMENT,
             "return torch.where(_coin(x, p, g), x.flip(-2), x)", "return torch.where(_coin(x, p, g), x.flip(-1), x)",
             ("tests/test_augment.py",), "the vertical flip flips left-right"),
    Mutation("brightness-only-brightens", AUGMENT,
             "def random_brightness(x: torch.Tensor, g: torch.Generator, strength: float = 0.2) -> torch.Tensor:\n"
             "    factor = 1 + (torch.rand(x.shape[0], generator=g) * 2 - 1) * strength",
             "def random_brightness(x: torch.Tensor, g: torch.Generator, strength: float = 0.2) -> torch.Tensor:\n"
             "    factor = 1 + torch.rand(x.shape[0], generator=g) * strength",
             ("tests/test_augment.py",), "factor in [1, 1+s] instead of [1-s, 1+s]"),
    Mutation("crop-never-takes-the-last-offset", AUGMENT,
             "dy = torch.randint(0, 2 * padding + 1, (n,), generator=g)",
             "dy = torch.randint(0, 2 * padding, (n,), generator=g)",
             ("tests/test_augment.py",), "vertical offsets 0..2p-1: the crop is biased upwards"),
    # -- losses --------------------------------------------------------------------------------------------
    Mutation("cb-effective-number-off-by-one", LOSSES,
             "torch.pow(torch.tensor(beta, dtype=torch.float64), counts)",
             "torch.pow(torch.tensor(beta, dtype=torch.float64), counts - 1)",
             ("tests/test_losses.py",), "E_n = (1 - beta^(n-1)) / (1 - beta)"),
    Mutation("cb-weights-not-summing-to-c", LOSSES,
             "return (w / w.sum() * counts.numel()).float()", "return (w / w.sum()).float()",
             ("tests/test_losses.py",), "class-balanced weights normalised to 1 instead of C"),
    Mutation("focal-ignores-gamma", LOSSES,
             "clamp_min(1e-12) ** self.gamma", "clamp_min(1e-12) ** 2.0",
             ("tests/test_losses.py",), "every focal loss uses gamma = 2"),
    Mutation("ldam-margin-exponent", LOSSES,
             "m = _checked_counts(class_counts) ** -0.25", "m = _checked_counts(class_counts) ** -0.5",
             ("tests/test_losses.py",), "margins proportional to n^(-1/2) instead of n^(-1/4)"),
    Mutation("logit-adjust-ignores-tau", LOSSES,
             'self.register_buffer("adjustment", tau * log_prior(class_counts))',
             'self.register_buffer("adjustment", log_prior(class_counts))',
             ("tests/test_losses.py",), "logit adjustment always with tau = 1"),
    Mutation("weighted-ce-plain-weights", LOSSES,
             "return (counts.sum() / counts).float()", "return (1 / counts).float()",
             ("tests/test_losses.py",), "inverse-frequency weights 1/N_j instead of sum N / N_j"),
    # -- metrics -------------------------------------------------------------------------------------------
    Mutation("balanced-acc-uses-precision", METRICS,
             "cm.diagonal()[present].double() / support[present]",
             "cm.diagonal()[present].double() / cm.sum(dim=0)[present].clamp_min(1)",
             ("tests/test_metrics.py",), "mean precision reported as balanced accuracy"),
    Mutation("macro-f1-skips-classes-never-right", METRICS,
             "present = denom > 0\n    if not present.any():\n        return 0.0\n    return float((2 * tp",
             "present = tp > 0\n    if not present.any():\n        return 0.0\n    return float((2 * tp",
             ("tests/test_metrics.py",), "a class with F1 = 0 left out of the macro mean"),
    # -- imbalance profiles, rebalancing, samplers ---------------------------------------------------------
    Mutation("exponential-profile-exponent", IMBALANCE,
             "ratio ** (-j / (c - 1))", "ratio ** (-j / c)",
             ("tests/test_imbalance.py",), "the last class keeps n_max / ratio^(9/10), not n_max / ratio"),
    Mutation("step-profile-rounds", IMBALANCE,
             "math.floor(n / ratio) if j in minority", "round(n / ratio) if j in minority",
             ("tests/test_imbalance.py",), "kept counts rounded instead of floored"),
    Mutation("minority-at-exactly-half", IMBALANCE,
             "if n < top / 2]", "if n <= top / 2]",
             ("tests/test_imbalance.py", "tests/test_rebalance.py"), "a class at exactly half counted as minority"),
    Mutation("sampler-forgets-class-size", "src/longtail/data/samplers.py",
             "(self.class_probabilities() / counts.clamp_min(1))[self.labels]",
             "self.class_probabilities()[self.labels]",
             ("tests/test_samplers.py",), "class j drawn with probability p_j * n_j, not p_j"),
    # -- jigsaw --------------------------------------------------------------------------------------------
    Mutation("sinkhorn-no-column-step", "src/longtail/jigsaw/sinkhorn.py",
             "log_p = log_p - torch.logsumexp(log_p, dim=-2, keepdim=True)",
             "log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)",
             ("tests/test_jigsaw.py", "-k", "sinkhorn"), "rows normalised twice, columns never"),
    Mutation("hungarian-minimises", "src/longtail/jigsaw/decode.py",
             "linear_sum_assignment(matrix, maximize=True)", "linear_sum_assignment(matrix)",
             ("tests/test_jigsaw.py", "-k", "hungarian or decode or jigsaw_metrics"),
             "the worst permutation instead of the best"),
    # -- study statistics and the schedule -----------------------------------------------------------------
    Mutation("paired-test-unpaired", "src/longtail/aggregate.py",
             "stats.ttest_rel(", "stats.ttest_ind(",
             ("tests/test_study.py", "-k", "noise_rule or own_baseline or mean_std"), "Welch/Student unpaired t-test"),
    Mutation("two-seed-rule-without-factor-2", "src/longtail/aggregate.py",
             'abs(result["diff_mean"]) > 2 * noise', 'abs(result["diff_mean"]) > noise',
             ("tests/test_study.py", "-k", "noise_rule or own_baseline or mean_std"), "|diff| > 1 x baseline std"),
    Mutation("std-over-seeds-is-population", "src/longtail/aggregate.py",
             '"std": statistics.stdev(values) if len(values) > 1',
             '"std": statistics.pstdev(values) if len(values) > 1',
             ("tests/test_study.py", "-k", "noise_rule or own_baseline or mean_std"), "ddof = 0 instead of 1"),
    Mutation("ldam-ece-of-bare-cosines", "src/longtail/tasks/classify.py",
             "self.cfg.ece_bins, self.logit_adjustment, self.logit_scale)", "self.cfg.ece_bins, self.logit_adjustment)",
             ("tests/test_inference.py", "-k", "ldam"), "ECE from softmax(cos), not softmax(s cos)"),
    Mutation("export-drops-the-logit-scale", "src/longtail/inference/model.py",
             "return self.net(self.preprocess(images)).float() * self.logit_scale - self.logit_adjustment",
             "return self.net(self.preprocess(images)).float() - self.logit_adjustment",
             ("tests/test_inference.py", "-k", "ldam"), "the exported model forgets LDAM's s"),
    Mutation("recovery-over-the-reference", "src/longtail/aggregate.py",
             "- base) / cost if cost > 0", ") / cost if cost > 0",
             ("tests/test_study.py", "-k", "recovery"), "arm / gap instead of (arm - baseline) / gap"),
    Mutation("recovery-any-shared-seed", "src/longtail/aggregate.py",
             "seeds = set(arm) & set(baseline) & set(reference)", "seeds = set(arm) | set(baseline) & set(reference)",
             ("tests/test_study.py", "-k", "recovery"), "the arm's own seeds, not those all three share"),
    Mutation("crop-zeros-replicates-the-edge", "src/longtail/data/augment.py",
             "return _gather(x, rows.clamp(0, h - 1), cols.clamp(0, w - 1)) * inside",
             "return _gather(x, rows.clamp(0, h - 1), cols.clamp(0, w - 1))",
             ("tests/test_augment.py", "-k", "zero"), "the zero-filled crop repeats the edge pixels instead of black"),
    Mutation("selection-spread-population-std", "tools/selection_rules.py",
             "statistics.stdev(tail)", "statistics.pstdev(tail)",
             ("tests/test_tools.py",), "the last epochs' population std instead of the sample std"),
    Mutation("selection-last-epochs-off-by-one", "tools/selection_rules.py",
             "tail = [r[\"test_acc\"] for r in rows[-last:]]", "tail = [r[\"test_acc\"] for r in rows[-last - 1:]]",
             ("tests/test_tools.py",), "one epoch too many in the spread of the last epochs"),
    Mutation("onecycle-warmup-starts-at-zero", "src/longtail/engine.py",
             "return 0.1 + 0.9 * step / warm", "return step / warm",
             ("tests/test_train.py", "-k", "schedule"), "warm-up from 0 instead of lr/10"),
    Mutation("onecycle-warmup-length", "src/longtail/engine.py",
             "warm = max(1, int(0.25 * total_steps))", "warm = max(1, int(0.3 * total_steps))",
             ("tests/test_train.py", "-k", "schedule"), "warm-up over 30% of the steps instead of 25%"),
    # -- this round's long-tail units (issue #13) and pretext units (issue #14) ---------------------------
    Mutation("lt-schedule-decay-late", "src/longtail/engine.py",
             "LT_EPOCHS, LT_WARMUP, LT_DECAYS = 200, 5, ((180, 1e-4), (160, 1e-2))", "LT_EPOCHS, LT_WARMUP, LT_DECAYS = 200, 5, ((180, 1e-4), (170, 1e-2))",
             ("tests/test_train.py", "-k", "lt"), "x0.01 after epoch 170 instead of 160"),
    Mutation("ece-signed-sum", METRICS,
             "return float((correct_sum - conf_sum).abs().sum()) / total",
             "return float((correct_sum - conf_sum).sum().abs()) / total",
             ("tests/test_metrics.py",), "over- and under-confident bins cancel"),
    Mutation("ece-bins-right-closed-wrong", METRICS,
             "index = torch.bucketize(raw, boundaries[1:-1])", "index = torch.bucketize(raw, boundaries[1:-1], right=True)",
             ("tests/test_metrics.py",), "a confidence on a boundary goes to the upper bin"),
    Mutation("many-group-includes-100", METRICS,
             'groups["many" if n > MANY_ABOVE', 'groups["many" if n >= MANY_ABOVE',
             ("tests/test_metrics.py",), "a class of exactly 100 images counted as many, not medium"),
    Mutation("thirds-head-of-four", METRICS,
             '(("head", order[:3]), ("middle", order[3:7])', '(("head", order[:4]), ("middle", order[4:7])',
             ("tests/test_metrics.py",), "head/middle split 4/3 instead of 3/4"),
    Mutation("cb-focal-modulator-sign", LOSSES,
             "torch.exp(-self.gamma * t * z - self.gamma * F.softplus(-z))",
             "torch.exp(self.gamma * t * z - self.gamma * F.softplus(-z))",
             ("tests/test_losses.py",), "the focal factor grows instead of shrinking for easy examples"),
    Mutation("cb-focal-bias-log-c", LOSSES,
             "self.init_bias = -math.log(num_classes - 1)", "self.init_bias = -math.log(num_classes)",
             ("tests/test_losses.py",), "sigmoid(b) = 1/(C+1) at the start instead of 1/C"),
    Mutation("class-aware-rounds-not-shuffled", "src/longtail/data/samplers.py",
             "slot_class = torch.argsort(torch.rand(rounds, c, generator=generator), dim=1).flatten()",
             "slot_class = torch.arange(c).repeat(rounds)",
             ("tests/test_samplers.py",), "classes always visited in the same order"),
    Mutation("drs-switches-one-epoch-early", REBALANCE,
             "if epoch < from_epoch:", "if epoch < from_epoch - 1:",
             ("tests/test_rebalance.py", "tests/test_samplers.py"), "rebalancing starts an epoch before DRS's epoch"),
    Mutation("hamming-picks-nearest", "src/longtail/jigsaw/permutations.py",
             "best = int(nearest.argmax())", "best = int(np.where(nearest > 0, nearest, 99).argmin())",
             ("tests/test_jigsaw.py", "-k", "hamming or permutation"), "the closest permutation instead of the farthest"),
    Mutation("kendall-tau-a-denominator", "src/longtail/jigsaw/metrics.py",
             "denominator = torch.sqrt((dp != 0).sum(dim=1).double() * (dt != 0).sum(dim=1).double())",
             "denominator = torch.full_like(dp[:, 0], float(pairs))",
             ("tests/test_jigsaw.py", "-k", "kendall"), "tau-a instead of scipy's tau-b when predictions tie"),
    Mutation("rotation-turns-clockwise", "src/longtail/tasks/rotation.py",
             "torch.rot90(x, k, dims=(-2, -1))", "torch.rot90(x, -k, dims=(-2, -1))",
             ("tests/test_rotation.py",), "labels 90 and 270 swapped"),
    Mutation("crop-resize-shrinks-longer-side", "src/longtail/data/resize.py",
             "scale = max(th / height, tw / width)", "scale = min(th / height, tw / width)",
             ("tests/test_sources.py", "tests/test_layouts.py", "-k", "resize or image_size or crop"),
             "the image fits inside the target instead of covering it"),
    Mutation("mixup-pairing-ignores-step", "src/longtail/tasks/mixing.py",
             "derived_generator(*step_seed, MIX_STREAM)", "derived_generator(*step_seed[:2], MIX_STREAM)",
             ("tests/test_mixing.py", "-k", "draw or coordinates"), "every batch of an epoch mixed with the same lam and pairs"),
    Mutation("mixup-labels-unmixed-weight", "src/longtail/tasks/mixing.py",
             "return w * loss_fn(logits, batch.y_a) + (1 - w) * loss_fn(logits, batch.y_b)",
             "return loss_fn(logits, batch.y_a)",
             ("tests/test_mixing.py",), "mixed images trained on their own label only"),
    Mutation("remix-threshold-strict", "src/longtail/tasks/mixing.py",
             "weight[(ratio >= kappa) & (lam < tau)] = 0.0", "weight[(ratio > kappa) & (lam < tau)] = 0.0",
             ("tests/test_mixing.py",), "a pair exactly kappa times apart keeps mixup's label"),
    Mutation("posthoc-tau-adds-prior", "src/longtail/tasks/posthoc.py",
             "(logits - tau * prior).argmax(dim=1)", "(logits + tau * prior).argmax(dim=1)",
             ("tests/test_posthoc.py",), "the adjustment favours the head classes"),
    Mutation("tau-norm-squares-the-norm", "src/longtail/decoupling.py",
             "norms = weight.detach().flatten(1).norm(dim=1)", "norms = weight.detach().flatten(1).pow(2).sum(dim=1)",
             ("tests/test_decoupling.py", "-k", "tau"), "rows divided by ||w||^(2 tau) instead of ||w||^tau"),
    Mutation("tau-search-keeps-the-last", "src/longtail/decoupling.py",
             "        if value > best_score:\n            best, best_score = i, value",
             "        if value >= best_score:\n            best, best_score = i, value",
             ("tests/test_decoupling.py", "-k", "tau"), "ties go to the larger tau"),
    Mutation("lws-folds-without-the-bias", "src/longtail/decoupling.py",
             "            self.layer.bias.mul_(self.scale)", "            pass",
             ("tests/test_decoupling.py", "-k", "lws"), "folded LWS logits lose the scale on the bias"),
]


def find_cifar_zip() -> str | None:
    path = os.environ.get("LONGTAIL_CIFAR_ZIP") or str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip")
    return path if Path(path).exists() else None


def check_snippets(mutations: list[Mutation]) -> list[str]:
    """One message per mutation whose snippet does not occur exactly once (or whose file is gone)."""
    problems = []
    for m in mutations:
        path = REPO / m.path
        if not path.exists():
            problems.append(f"{m.name}: {m.path} does not exist (moved?)")
            continue
        count = path.read_text().count(m.original)
        if count != 1:
            problems.append(f"{m.name}: the snippet occurs {count} times in {m.path}, not once:\n    {m.original!r}")
    return problems


def make_copy(root: Path) -> Path:
    copy = root / "repo"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, copy / name)
    return copy


def run_pytest(copy: Path, tests: tuple[str, ...], env: dict, timeout: float) -> tuple[int | None, float, str]:
    """(pytest's exit status or None on timeout, seconds, last lines of its output)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    start = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start, ""
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
    return r.returncode, time.monotonic() - start, tail


def verdict(rc: int | None) -> str:
    # pytest: 0 all passed, 1 some failed, 5 nothing selected; anything else is an error of the run.
    if rc is None:
        return "caught (timeout)"
    return {0: "MISSED", 1: "caught", 5: "MISSED (no tests selected)"}.get(rc, f"ERROR (pytest exit {rc})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="WORD", help="run the mutations whose name contains a WORD")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmutated copy")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output for missed mutations")
    args = parser.parse_args(argv)

    mutations = [m for m in MUTATIONS if not args.only or any(w in m.name for w in args.only)]
    if args.list:
        for m in mutations:
            print(f"{m.name:36} {m.path:34} {' '.join(m.tests):45} {m.why}")
        return 0
    if not mutations:
        print("no mutation matches --only", file=sys.stderr)
        return 2
    problems = check_snippets(mutations)
    if problems:
        print("mutation_check: the code moved; update these mutations in tools/mutation_check.py:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        root = Path(tmp)
        copy = make_copy(root)
        env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        env.setdefault("LONGTAIL_TEST_CACHE", str(root / "cache"))
        cifar = find_cifar_zip()
        if cifar:
            env["LONGTAIL_CIFAR_ZIP"] = cifar
        else:
            print("warning: real CIFAR-10 zip not found; tests that need it will be skipped", file=sys.stderr)

        if not args.no_baseline:
            selections = list(dict.fromkeys(m.tests for m in mutations))
            for tests in selections:
                rc, seconds, tail = run_pytest(copy, tests, env, args.timeout)
                print(f"unmutated  {' '.join(tests):60} {'ok' if rc == 0 else verdict(rc):>8} {seconds:6.1f}s",
                      flush=True)
                if rc not in (0, 5):
                    print(tail, file=sys.stderr)
                    print("mutation_check: the unmutated tests do not pass; nothing to compare with", file=sys.stderr)
                    return 2
            print(flush=True)

        rows = []
        print(f"{'mutation':36} {'file':34} {'result':26} {'time':>7}", flush=True)
        for m in mutations:
            target = copy / m.path
            original_text = target.read_text()
            target.write_text(original_text.replace(m.original, m.replacement, 1))
            try:
                rc, seconds, tail = run_pytest(copy, m.tests, env, args.timeout)
            finally:
                target.write_text(original_text)
            result = verdict(rc)
            rows.append((m, result))
            print(f"{m.name:36} {m.path.removeprefix('src/longtail/'):34} {result:26} {seconds:6.1f}s", flush=True)
            if args.verbose and not result.startswith("caught"):
                print("    " + tail.replace("\n", "\n    "))

    caught = sum(r.startswith("caught") for _, r in rows)
    print(f"\n{caught} of {len(rows)} mutations caught in {time.monotonic() - started:.0f} s")
    missed = [m.name for m, r in rows if not r.startswith("caught")]
    if missed:
        print("not caught: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
