"""What a report draws, read from the run store alone: a study folder (OUT/runs/<arm>/seed-<n>/,
optionally OUT/pretrain/seed-<n>/ and OUT/study.json) or a single run folder.

A run folder without summary.json is kept and marked partial: its curves are drawn (dashed, labelled
"partial") but it never enters the statistics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from longtail.aggregate import aggregate_runs
from longtail.config import TrainConfig
from longtail.errors import LongtailError
from longtail.runs import RunDir, read_json

SEED_DIR = re.compile(r"^seed-(\d+)$")
# Settings that differ from run to run of one arm, or that do not change what is trained: left out
# when two arms are compared to find the one setting they differ in.
RUN_SPECIFIC = {"out", "seed", "resume", "quiet", "threads", "data", "checkpoint_every", "device", "precision",
                "precision_used", "device_used", "world_size", "dataset_fingerprint"}


@dataclass
class RunRecord:
    path: Path
    arm: str
    seed: int | None
    config: dict
    metrics: list[dict]
    summary: dict | None

    @property
    def partial(self) -> bool:
        return self.summary is None

    @property
    def label(self) -> str:
        return self.arm if self.seed is None else f"{self.arm} seed {self.seed}"


@dataclass
class ReportData:
    root: Path
    kind: str  # "study" or "run"
    title: str
    arms: list[str]
    runs: list[RunRecord]
    pretrain: list[RunRecord] = field(default_factory=list)
    baseline: str | None = None
    baselines: dict[str, str] | None = None  # arm -> its own baseline arm (study.json "baselines")
    aggregate: dict | None = None
    classes: list[str] = field(default_factory=list)

    def finished(self, arm: str) -> list[RunRecord]:
        return [r for r in self.runs if r.arm == arm and not r.partial]

    def seed_number(self, arm: str) -> float | None:
        """The seed report's number for this arm, if the arm is the seed's (see reference.py)."""
        from longtail.report.reference import seed_number

        runs = [r for r in self.runs if r.arm == arm]
        return seed_number(arm, runs[0].config, self.classes) if runs else None

    @property
    def partial_runs(self) -> list[RunRecord]:
        return [r for r in self.runs + self.pretrain if r.partial]

    def config(self, arm: str) -> dict:
        """The settings of ``arm`` (its first run's config.json)."""
        return next((r.config for r in self.runs if r.arm == arm), {})

    def counterpart(self, arm: str, differing: set[str], accept: Callable[[dict], bool]) -> str | None:
        """The first other arm whose settings equal ``arm``'s except in the keys ``differing``, and
        whose settings ``accept`` takes (e.g. "has no init")."""
        ignored = RUN_SPECIFIC | differing

        def setting(a: str) -> dict:
            return {k: v for k, v in self.config(a).items() if k not in ignored}

        mine = setting(arm)
        return next((a for a in self.arms if a != arm and accept(self.config(a)) and setting(a) == mine), None)

    def first_arm(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` that is an arm here."""
        return next((a for a in names if a in self.arms), None)

    @property
    def dataset(self) -> dict:
        """name, fingerprint and source (the --data given) of the data the runs used."""
        for r in self.runs + self.pretrain:
            info = (r.summary or {}).get("dataset") or {}
            fingerprint = info.get("fingerprint") or r.config.get("dataset_fingerprint")
            if fingerprint or r.config.get("data"):
                return {"name": info.get("name"), "fingerprint": fingerprint, "source": r.config.get("data")}
        return {}


def _read_metrics(run: RunDir) -> list[dict]:
    try:
        return run.read_metrics()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LongtailError(f"{run.metrics_path} is not valid JSON lines: {e}") from None


def read_run(path: Path, arm: str, seed: int | None) -> RunRecord | None:
    """The run in ``path``, or None when the folder holds no run files at all."""
    run = RunDir(path)
    if not (run.config_path.exists() or run.metrics_path.exists() or run.summary_path.exists()):
        return None
    config = run.read_config() if run.config_path.exists() else {}
    summary = run.read_summary() if run.finished else None
    if seed is None and isinstance(config.get("seed"), int):
        seed = config["seed"]
    return RunRecord(path, arm, seed, config, _read_metrics(run), summary)


def _seed_dirs(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := SEED_DIR.match(p.name))]
    return sorted(found)


def _check_one_dataset(records: list[RunRecord], root: Path) -> None:
    # A run in progress has no summary yet, but its config.json records the data's fingerprint.
    first: tuple[str, str] | None = None
    for r in records:
        fingerprint = (r.summary or {}).get("dataset", {}).get("fingerprint") or r.config.get("dataset_fingerprint")
        if fingerprint is None:
            continue
        if first is None:
            first = (r.label, fingerprint)
        elif fingerprint != first[1]:
            raise LongtailError(f"{root} mixes runs of different datasets: {first[0]} used {first[1][:16]}, "
                                f"{r.label} used {fingerprint[:16]}")


def collect_report_data(root: str | Path) -> ReportData:
    root = Path(root)
    if not root.is_dir():
        raise LongtailError(f"{root} is not a folder")
    if (root / "runs").is_dir() or (root / "pretrain").is_dir() or (root / "study.json").exists():
        data = _collect_study(root)
    else:
        record = read_run(root, root.resolve().name, None)
        if record is None:
            raise LongtailError(f"no runs found in {root} (expected config.json of a run, or runs/<arm>/seed-<n>/ "
                                "or pretrain/seed-<n>/ of a study)")
        if "task" in record.config:  # a pretraining run (PretrainConfig has a task)
            data = ReportData(root, "run", record.arm, [], [], pretrain=[record])
        else:
            data = ReportData(root, "run", record.arm, [record.arm], [record])
    _check_one_dataset(data.runs + data.pretrain, root)
    summaries: dict[str, dict[int, dict]] = {}
    for r in data.runs:
        if not r.partial:
            summaries.setdefault(r.arm, {})[r.seed if r.seed is not None else 0] = r.summary
    data.aggregate = aggregate_runs({a: summaries[a] for a in data.arms if a in summaries},
                                    data.baselines if data.baselines else
                                    data.baseline if data.baseline in summaries else None)
    data.classes = next((r.summary["classes"] for r in data.runs if not r.partial and "classes" in r.summary), [])
    return data


def _collect_study(root: Path) -> ReportData:
    study = read_json(root / "study.json") if (root / "study.json").exists() else {}
    runs_dir = root / "runs"
    found_arms = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    arms = [a for a in study.get("arms", []) if a in found_arms] + [a for a in found_arms if a not in study.get("arms", [])]
    runs = []
    for arm in arms:
        for seed, path in _seed_dirs(runs_dir / arm):
            record = read_run(path, arm, seed)
            if record is not None:
                runs.append(record)
    pretrain = [r for seed, path in _seed_dirs(root / "pretrain") if (r := read_run(path, "pretrain", seed))]
    if not runs and not pretrain:
        raise LongtailError(f"no runs found in {root} (no runs/<arm>/seed-<n>/ or pretrain/seed-<n>/ folder holds a run yet)")
    arms = list(dict.fromkeys(r.arm for r in runs))
    baseline = study.get("baseline", "imbalanced" if "imbalanced" in arms else None)
    return ReportData(root, "study", str(study.get("name", root.resolve().name)), arms, runs, pretrain, baseline,
                      baselines=study.get("baselines"))


def padding_pairs(data: ReportData) -> list[tuple[str, str]]:
    """(arm with 'same' padding, arm with 'valid' padding) for every 'valid' arm whose settings
    are another arm's but for the padding (the seed-imbalance preset's balanced / balanced-valid)."""
    pairs = []
    for arm in data.arms:
        if data.config(arm).get("padding") == "valid":
            same = data.counterpart(arm, {"padding"}, lambda c: c.get("padding", "same") == "same")
            if same is not None:
                pairs.append((same, arm))
    return pairs


# What makes an arm "from a jigsaw checkpoint"; two arms that differ only in these are an init pair.
# Read off TrainConfig, so a transfer option added there cannot silently break the pairing.
TRANSFER_KEYS = {f.name for f in fields(TrainConfig) if f.name == "init" or f.name.startswith("transfer")}


def init_pairs(data: ReportData) -> list[tuple[str, str]]:
    """(arm from random init, arm from a jigsaw checkpoint) for every arm with ``init`` whose other
    settings, the transfer options aside, are an arm's without it (the seed-jigsaw preset's
    random-init / jigsaw-init; jigsaw-improved's jigsaw-convs is paired with random-init too)."""
    pairs = []
    for arm in data.arms:
        if data.config(arm).get("init"):
            plain = data.counterpart(arm, TRANSFER_KEYS, lambda c: not c.get("init"))
            if plain is not None:
                pairs.append((plain, arm))
    return pairs
