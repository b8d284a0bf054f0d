"""A study: a grid of arms x seeds from one TOML file, each cell a normal run directory, then the
per-arm statistics over seeds. File format (docs/imbalance.md)::

    name = "seed-imbalance"
    seeds = [0, 1, 2]
    baseline = "imbalanced"      # optional; default: the arm named "imbalanced", if any
    reference = "balanced"       # optional: the arm without imbalance; each arm's recovery of the gap
    [defaults]                   # TrainConfig keys shared by all arms
    recipe = "seed"
    [[arms]]
    name = "balanced"            # then TrainConfig keys overriding the defaults
    [pretrain.rotation-lt]       # optional: PretrainConfig keys; one pretraining run per seed
    task = "rotation"
    data_from = "imbalanced"     # that arm's training images (or "all"); see study_pretrain.py
    [[arms]]
    name = "rotation-init"
    init = "pretrain:rotation-lt"  # that seed's checkpoint of this pretraining
    baseline = "imbalanced"      # optional: compare this arm with another than the study's baseline

A single ``[pretrain]`` table (the older form) is the pretraining named "pretrain", ``init = "pretrain"``.

Layout: OUT/study.json (the resolved grid), OUT/runs/<arm>/seed-<n>/, OUT/pretrain/<name>/seed-<n>/
(OUT/pretrain/seed-<n>/ for a single [pretrain] table), OUT/aggregate.json, OUT/results.csv (one row
per arm) and OUT/runs.csv (one row per finished run).
Every run uses resume=True, so a rerun skips finished runs and continues interrupted ones.

The three pieces a scheduler needs are separate: :func:`grid` (the ordered cells),
:func:`run_cell` (one cell), :func:`collect` (statistics of whatever has finished).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.config import STAGE_KEEPS, TrainConfig, resolve_pretrain_config, resolve_train_config
from longtail.errors import LongtailError, TrainingInterrupted
from longtail.runs import RunDir, write_json
from longtail.settings import check_mapping, load_toml, run_neutral_keys, setting_defaults
from longtail.study_pretrain import Pretraining, check_arm_inits, parse_pretrainings

STUDY_KEYS = ("name", "seeds", "baseline", "reference", "defaults", "arms", "pretrain")
# Set per cell by the study itself; a study file that sets them is in error.
CELL_KEYS = {"seed": "use seeds = [...] at the top of the file", "out": "runs go to OUT/runs/<arm>/seed-<n>",
             "resume": "study runs always resume", "quiet": "use --quiet"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class Study:
    name: str
    seeds: list[int]
    defaults: dict
    arms: list[tuple[str, dict]]
    pretrainings: dict[str, Pretraining]  # by what an arm's init names: "pretrain" or "pretrain:NAME"
    baseline: str | None
    out: Path
    data: str
    source: str
    quiet: bool = False
    # arm -> the arm it is compared with, seed by seed (its own `baseline` key, else the study's)
    baselines: dict[str, str] = dataclasses.field(default_factory=dict)
    reference: str | None = None  # the arm whose score is "no imbalance" (aggregate.py's recovery)


@dataclass
class Cell:
    """One run of the grid. ``group`` keeps a pretraining run and the runs that need it together."""

    kind: str  # "train" or "pretrain"
    arm: str  # of a pretraining's cell: "pretrain" or "pretrain:NAME", what an arm's init names it by
    seed: int
    run_dir: Path
    config: Any  # TrainConfig or PretrainConfig
    group: tuple
    needs: str | None = None  # of a train cell started from a pretraining or another arm: that cell's arm

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise LongtailError(f"{what} must be a name of letters, digits, '.', '_', '+' or '-', got {value!r}")
    return value


def parse_seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in value):
        raise LongtailError(f"seeds in {where} must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise LongtailError(f"seeds in {where} repeat a seed: {value!r}")
    return list(value)


def _table(raw: dict, key: str, path: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise LongtailError(f"[{key}] in {path} must be a table")
    return value


def _check_train_keys(mapping: dict, where: str) -> dict:
    for key in mapping:
        name = key.replace("-", "_")
        if name in CELL_KEYS:
            raise LongtailError(f"key {key!r} in {where} is set by the study ({CELL_KEYS[name]})")
    return check_mapping(TrainConfig, mapping, where)


def load_study(path: str | Path, *, data: str | None = None, out: str | Path | None = None,
               seeds: list[int] | None = None, quiet: bool = False) -> Study:
    """Read and check a study file; ``data``, ``out`` and ``seeds`` (from the CLI) override it."""
    path = str(path)
    raw = load_toml(path)
    unknown = [k for k in raw if k not in STUDY_KEYS]
    if unknown:
        raise LongtailError(f"unknown key {unknown[0]!r} in {path} (a study file holds {', '.join(STUDY_KEYS)})")
    if "name" not in raw:
        raise LongtailError(f"{path} has no name = \"...\"")
    name = _name(raw["name"], f"name in {path}")
    defaults = _check_train_keys(_table(raw, "defaults", path), f"[defaults] of {path}")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or not arms_raw or not all(isinstance(a, dict) for a in arms_raw):
        raise LongtailError(f"{path} needs at least one [[arms]] table")
    arms, arm_baselines = [], {}
    for i, arm in enumerate(arms_raw, 1):
        if "name" not in arm:
            raise LongtailError(f"arm #{i} in {path} has no name")
        arm_name = _name(arm["name"], f"the name of arm #{i} in {path}")
        if any(arm_name == a for a, _ in arms):
            raise LongtailError(f"two arms in {path} are named {arm_name!r}")
        overrides = {k: v for k, v in arm.items() if k not in ("name", "baseline")}
        where = f"arm {arm_name!r} of {path}"
        if "baseline" in arm:
            arm_baselines[arm_name] = arm["baseline"]
        if "data" in overrides:
            raise LongtailError(f"key 'data' in {where}: one study uses one dataset (set it in [defaults] or with --data)")
        arms.append((arm_name, _check_train_keys(overrides, where)))
    pretrainings = parse_pretrainings(raw.get("pretrain"), path, defaults, arms, CELL_KEYS, _name)
    check_arm_inits(pretrainings, defaults, arms, path)
    check_arm_refs(defaults, arms, path)
    names = [a for a, _ in arms]
    baseline = raw.get("baseline", "imbalanced" if "imbalanced" in names else None)
    if baseline is not None and baseline not in names:
        raise LongtailError(f"baseline {baseline!r} in {path} is not one of its arms ({', '.join(names)})")
    for arm_name, base in arm_baselines.items():
        if base not in names or base == arm_name:
            raise LongtailError(f"baseline {base!r} of arm {arm_name!r} in {path} is not one of its other arms "
                                f"({', '.join(n for n in names if n != arm_name)})")
    baselines = {a: arm_baselines.get(a, baseline) for a in names
                 if arm_baselines.get(a, baseline) not in (None, a)}
    reference = raw.get("reference")
    if reference is not None and (reference not in names or reference == baseline):
        raise LongtailError(f"reference {reference!r} in {path} is not one of its arms other than the baseline "
                            f"({', '.join(n for n in names if n != baseline)})")
    return Study(name=name, seeds=parse_seeds(seeds if seeds is not None else raw.get("seeds", [0, 1, 2]),
                                              "--seeds" if seeds is not None else path),
                 defaults=defaults, arms=arms, pretrainings=pretrainings, baseline=baseline,
                 out=Path(out) if out is not None else Path("runs") / name,
                 data=data if data is not None else defaults.get("data", TrainConfig.data), source=path, quiet=quiet,
                 baselines=baselines, reference=reference)


ARM_INIT = "arm:"  # init = "arm:NAME": that seed's finished run of arm NAME (e.g. the source of a --stage)


def arm_ref(init: Any) -> str | None:
    """The arm an ``init = "arm:NAME"`` names, else None."""
    return init[len(ARM_INIT):] if isinstance(init, str) and init.startswith(ARM_INIT) else None


def check_arm_refs(defaults: dict, arms: list[tuple[str, dict]], path: str) -> None:
    """Every ``init = "arm:NAME"`` names an arm earlier in the file: it runs first, and a chain of
    such references cannot loop."""
    earlier: list[str] = []
    for arm, overrides in arms:
        ref = arm_ref({**defaults, **overrides}.get("init"))
        if ref is not None and ref not in earlier:
            why = "itself" if ref == arm else "an arm after it" if any(ref == a for a, _ in arms) else "no arm"
            raise LongtailError(f"arm {arm!r} of {path} has init = \"arm:{ref}\", which names {why}; it must name "
                                f"an arm above it ({', '.join(earlier) or 'there is none'})")
        earlier.append(arm)


def run_dir(study: Study, arm: str, seed: int) -> Path:
    return study.out / "runs" / arm / f"seed-{seed}"


def grid(study: Study) -> list[Cell]:
    """Every cell of the study in run order: seed by seed (so each finished seed is a complete
    comparison), a seed's pretrainings first, then its arms in file order."""
    cells = []
    for seed in study.seeds:
        for key, p in study.pretrainings.items():
            folder = p.folder(study.out, seed)
            base = {**p.settings(), "data": study.data, "seed": seed, "out": str(folder), "quiet": study.quiet,
                    "resume": True}
            try:
                config = resolve_pretrain_config(base=base)
            except LongtailError as e:
                raise LongtailError(f"{key}: {e}") from None
            cells.append(Cell("pretrain", key, seed, folder, config, (key, seed)))
        for arm, overrides in study.arms:
            values = {**study.defaults, **overrides, "data": study.data, "seed": seed,
                      "out": str(run_dir(study, arm, seed)), "resume": True, "quiet": study.quiet}
            group: tuple = (arm, seed)
            needs = values.get("init") if values.get("init") in study.pretrainings else None
            if needs is not None:
                values["init"] = str(study.pretrainings[needs].folder(study.out, seed) / "checkpoint.pt")
                group = (needs, seed)
            elif (source := arm_ref(values.get("init"))) is not None:
                # the same seed's run of the source arm, in the source's group (shards keep them together)
                needs, values["init"] = source, str(run_dir(study, source, seed) / "checkpoint.pt")
                if values.get("stage", "none") != "none":
                    # as on the command line, a stage takes its source's data and network settings
                    # where its own arm does not set them (before that run exists, from the file)
                    source_values = {**study.defaults, **dict(study.arms)[source]}
                    values.update({k: source_values[k] for k in STAGE_KEEPS
                                   if k in source_values and k not in overrides and k != "data"})
                group = next(c.group for c in cells if c.kind == "train" and (c.arm, c.seed) == (source, seed))
            try:
                config = resolve_train_config(base=values)
            except LongtailError as e:
                raise LongtailError(f"arm {arm!r}: {e}") from None
            cells.append(Cell("train", arm, seed, run_dir(study, arm, seed), config, group, needs))
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        k_i, n_i = int(k), int(n)
    except ValueError:
        k_i = n_i = 0
    if not sep or not 1 <= k_i <= n_i:
        raise LongtailError(f"--shard must look like K/N with 1 <= K <= N, got {text!r}")
    return k_i, n_i


def shard(cells: list[Cell], k: int, n: int) -> list[Cell]:
    """The K-th of N slices (1-based): groups dealt round-robin in grid order, so the assignment
    depends only on the study file and every slice gets a near-equal share."""
    groups = list(dict.fromkeys(c.group for c in cells))
    mine = {g for i, g in enumerate(groups) if i % n == k - 1}
    return [c for c in cells if c.group in mine]


def select_arms(study: Study, cells: list[Cell], arms: list[str]) -> list[Cell]:
    """The cells of the named arms and, transitively, of the pretrainings and arms they start from
    (a stage arm cannot run without its source arm's run of the same seed)."""
    known = [name for name, _ in study.arms]
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise LongtailError(f"--arms: {unknown[0]!r} is not an arm of {study.source} ({', '.join(known)})")
    by_key = {(c.arm, c.seed): c for c in cells}
    wanted = {(c.arm, c.seed) for c in cells if c.arm in arms}
    frontier = list(wanted)
    while frontier:
        cell = by_key[frontier.pop()]
        source = (cell.needs, cell.seed)
        if cell.needs is not None and source not in wanted:
            wanted.add(source)
            frontier.append(source)
    return [c for c in cells if (c.arm, c.seed) in wanted]


def check_cell(cell: Cell, dataset) -> None:
    """Catch what would fail in a cell before hours of other runs, not after: settings the data
    cannot serve (a profile under limit_train), loss parameters, a missing --init, and a run
    folder made with other settings or data."""
    from longtail.data.imbalance import profile_counts
    from longtail.data.prepare import available_counts
    from longtail.run import check_resumable, config_record

    cfg = cell.config
    try:
        counts = available_counts(cfg, dataset)
        if cfg.imbalance:
            profile_counts(cfg.imbalance, counts)
        if cell.kind == "train":
            import torch

            from longtail.losses import LossContext, build_loss

            build_loss(cfg.loss, LossContext(torch.ones(dataset.num_classes), cfg.epochs, cfg.label_smoothing,
                                             cfg.loss_params))
            if cfg.init and cell.needs is None and not Path(cfg.init).is_file():
                raise LongtailError(f"init checkpoint not found: {cfg.init}")
        else:
            from longtail.tasks import PRETEXT_TASKS

            PRETEXT_TASKS.get_entry(cfg.task).check_settings(cfg)
        run = RunDir(cell.run_dir)
        run.check_usable(resume=True)
        if run.config_path.exists():
            stored = run.read_config()
            # precision, device and world size are the run's own business; settings and data are the study's
            record = config_record(cfg, dataset.fingerprint, stored.get("precision_used"), stored.get("device_used"),
                                   stored.get("world_size"))
            check_resumable(run, record, run_neutral_keys(type(cfg)), setting_defaults(type(cfg)))
    except LongtailError as e:
        raise LongtailError(f"{cell.label}: {e}") from None


def run_cell(cell: Cell, dataset) -> dict:
    """Run (or resume, or skip if finished) one cell; returns its summary."""
    from longtail.run import run

    try:
        return run(cell.config, dataset)
    except TrainingInterrupted as e:
        raise TrainingInterrupted(f"{cell.label}: {e.where}",
                                  "rerun the same study command to continue (a study resumes its runs itself)") from None


def study_record(study: Study, cells: list[Cell]) -> dict:
    return {
        "name": study.name, "source": study.source, "seeds": study.seeds, "baseline": study.baseline,
        "baselines": study.baselines, "reference": study.reference,
        "data": study.data, "arms": [name for name, _ in study.arms],
        "pretrain": {p.name: p.record() for p in study.pretrainings.values()} or None,
        "cells": [{"kind": c.kind, "arm": c.arm, "seed": c.seed, "run_dir": str(c.run_dir.relative_to(study.out)),
                   "config": dataclasses.asdict(c.config)} for c in cells],
    }


def collect(study: Study, cells: list[Cell]) -> tuple[dict, list[Cell]]:
    """Aggregate the finished runs into OUT/aggregate.json, results.csv and runs.csv; return the
    aggregate and the cells still missing. Runs of different datasets are an error."""
    from longtail.aggregate import aggregate_runs, results_csv, runs_csv
    from longtail.runs import atomic_write

    summaries: dict[str, dict[int, dict]] = {arm: {} for arm, _ in study.arms}
    missing, fingerprints = [], {}
    for cell in cells:
        run = RunDir(cell.run_dir)
        if not run.finished:
            missing.append(cell)
            continue
        if cell.kind != "train":
            continue
        summary = run.read_summary()
        fingerprints[cell.label] = summary.get("dataset", {}).get("fingerprint")
        summaries[cell.arm][cell.seed] = summary
    if len(set(fingerprints.values())) > 1:
        (a, fa) = next(iter(fingerprints.items()))
        (b, fb) = next((label, f) for label, f in fingerprints.items() if f != fa)
        raise LongtailError(f"runs of different datasets in {study.out}: {a} used {str(fa)[:16]}, {b} used {str(fb)[:16]}")
    aggregate = aggregate_runs({arm: runs for arm, runs in summaries.items() if runs}, study.baselines,
                               study.reference)
    aggregate["study"] = study.name
    aggregate["missing"] = [str(c.run_dir.relative_to(study.out)) for c in missing]
    write_json(study.out / "aggregate.json", aggregate)
    for name, text in (("results.csv", results_csv(aggregate)), ("runs.csv", runs_csv(summaries))):
        data = text.encode()
        atomic_write(study.out / name, lambda f, data=data: f.write(data))
    return aggregate, missing


def start_study(study: Study) -> tuple[list[Cell], Any]:
    """The grid and its dataset, every cell checked, then study.json written: a study that cannot
    run, or whose folder holds runs of other settings or data, changes nothing on disk."""
    from longtail.data.sources import dataset_for

    cells = grid(study)
    dataset = dataset_for({**study.defaults, "data": study.data})  # the size and splits the arms share
    for cell in cells:
        check_cell(cell, dataset)
    write_json(study.out / "study.json", study_record(study, cells))
    return cells, dataset


def run_study(study: Study, *, shard_spec: tuple[int, int] | None = None, arms: list[str] | None = None,
              log: Callable[[str], None] = print) -> tuple[dict | None, list[Cell]]:
    """Load the data once, run this shard's cells (all of them without a shard; of ``arms`` only,
    and what they start from, when given), then aggregate when the whole grid has finished.
    Returns (aggregate or None, cells still missing)."""
    cells, dataset = start_study(study)
    mine = select_arms(study, cells, arms) if arms else cells
    mine = shard(mine, *shard_spec) if shard_spec else mine
    for cell in mine:
        was_finished = RunDir(cell.run_dir).finished
        started = time.time()
        summary = run_cell(cell, dataset)
        if not study.quiet:
            took = "finished earlier" if was_finished else f"{time.time() - started:.0f} s"
            figure = f"test acc {summary['test_acc']:.4f}" if "test_acc" in summary else "pretraining done"
            log(f"{cell.arm:<20} seed {cell.seed}  {figure}  ({took})")
    missing = [c for c in cells if not RunDir(c.run_dir).finished]
    if missing:
        return None, missing
    aggregate, _ = collect(study, cells)
    return aggregate, []


def run_with_workers(study: Study, workers: int, log: Callable[[str], None] = print, arms: list[str] | None = None
                     ) -> tuple[dict | None, list[Cell]]:
    """Run the grid in ``workers`` local processes, each with an equal share of the cores as its
    thread count (for many-core CPUs, where one small-CNN run cannot use every core), then aggregate.

    Cells are handed out as processes come free, so no worker idles while another has a queue; a
    seed's pretrainings run first and the arms initialised from each are queued when it finishes.
    """
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    cells, dataset = start_study(study)
    pending = [c for c in (select_arms(study, cells, arms) if arms else cells) if not RunDir(c.run_dir).finished]
    unfinished = {(c.arm, c.seed) for c in pending}  # a cell waits for the pretraining or arm it starts from
    blocked = [c for c in pending if c.kind == "train" and (c.needs, c.seed) in unfinished]
    ready = sorted((c for c in pending if c not in blocked), key=lambda c: c.kind != "pretrain")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                             initargs=(threads, {**study.defaults, "data": study.data})) as pool:
        running = {pool.submit(_worker_run, cell): cell for cell in ready}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                try:
                    summary, seconds = future.result()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                if not study.quiet:
                    figure = f"test acc {summary['test_acc']:.4f}" if "test_acc" in summary else "pretraining done"
                    log(f"{cell.arm:<20} seed {cell.seed}  {figure}  ({seconds:.0f} s)")
                for dependent in [c for c in blocked if (c.needs, c.seed) == (cell.arm, cell.seed)]:
                    running[pool.submit(_worker_run, dependent)] = dependent
    missing = [c for c in cells if not RunDir(c.run_dir).finished]
    return (collect(study, cells)[0] if not missing else None), missing


_WORKER_DATA: dict = {}


def _worker_start(threads: int, data: dict) -> None:
    import torch

    from longtail.data.sources import dataset_for

    torch.set_num_threads(threads)
    _WORKER_DATA["dataset"] = dataset_for(data)  # from the decoded cache: a fraction of a second


def _worker_run(cell: Cell) -> tuple[dict, float]:
    started = time.time()
    return run_cell(cell, _WORKER_DATA["dataset"]), time.time() - started
