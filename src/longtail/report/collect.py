"""What a report draws, read from the run store alone: a study folder (OUT/runs/<arm>/seed-<n>/,
optionally OUT/pretrain/seed-<n>/ or OUT/pretrain/<name>/seed-<n>/, and OUT/study.json) or a single
run folder.

A run folder without summary.json is kept and marked partial: its curves are drawn (dashed, labelled
"partial") but it never enters the statistics. A run whose config.json or summary.json is unusable
(see validate.py), a second folder of one seed, or a run whose classes differ from the first
finished run's is left out with a note; a metrics.jsonl keeps its good lines, with a note on the
rest; a malformed study.json is ignored field by field, with a note. The report is refused (one
LongtailError) only when nothing is left to report or the runs used different datasets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from longtail.aggregate import aggregate_runs
from longtail.config import TrainConfig, comparable_keys_ignored
from longtail.settings import setting_defaults
from longtail.errors import LongtailError
from longtail.report import validate as V
from longtail.runs import RunDir

SEED_DIR = re.compile(r"^seed-([0-9]+)$")
# Settings that differ from run to run of one arm, or that do not change what is trained: left out
# when two arms are compared to find the one setting they differ in (the run-neutral settings, the
# seed, and what a run records about where it ran; one source: longtail.config).
RUN_SPECIFIC = comparable_keys_ignored()
TRAIN_DEFAULTS = setting_defaults(TrainConfig)


@dataclass
class RunRecord:
    path: Path
    arm: str
    seed: int | None
    config: dict
    metrics: list[dict]
    summary: dict | None
    problem: str | None = None  # what was left out of its metrics.jsonl, for a note

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
    reference: str | None = None  # study.json "reference": the arm without imbalance
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
    def seed_study(self) -> bool:
        """Whether an arm is one of Homework 02's, by name and setting (reference.py): then the report
        follows the seed report; another study gets a headline instead."""
        from longtail.report.reference import HOMEWORK02_ARMS, is_seed_arm

        return any(is_seed_arm(a, self.config(a)) for a in self.arms if a in HOMEWORK02_ARMS)

    @property
    def has_seed_numbers(self) -> bool:
        return any(self.seed_number(a) is not None for a in self.arms)

    @property
    def jigsaw_pretrain(self) -> list[RunRecord]:
        """The pretraining runs the puzzles, pretext curves and pretext table show: all but those of
        another pretext task (a rotation run has no puzzles; a config.json too damaged to say is
        tried, and its problem noted, as before there were other tasks)."""
        from longtail.tasks import PRETEXT_TASKS

        others = tuple(t for t in PRETEXT_TASKS if t != "jigsaw")  # a tuple: a damaged task may be unhashable
        return [r for r in self.pretrain if r.config.get("task") not in others]

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
            # settings added since an arm ran are absent from its config.json: they had their default
            config = {**TRAIN_DEFAULTS, **self.config(a)}
            return {k: v for k, v in config.items() if k not in ignored}

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


Note = Callable[[str], None]


def _read_run(path: Path, arm: str, seed: int | None, pretraining: bool | None) -> RunRecord | None:
    """The run in ``path``, or None when the folder holds no run files at all; raises Unusable when
    its config.json or summary.json cannot be used. ``pretraining``: None for "as config.json says"."""
    run = RunDir(path)
    if not any(p.exists() or p.is_symlink() for p in (run.config_path, run.metrics_path, run.summary_path)):
        return None
    config: dict = {}
    if run.config_path.exists() or run.config_path.is_symlink():
        config = _checked(run.config_path, V.config_problem)
    if pretraining is None:
        pretraining = "task" in config  # PretrainConfig has a task
    summary = None
    if run.summary_path.exists() or run.summary_path.is_symlink():
        summary = _checked(run.summary_path, V.pretrain_summary_problem if pretraining else V.summary_problem)
    if seed is None and isinstance(config.get("seed"), int) and not isinstance(config["seed"], bool):
        seed = config["seed"]
    metrics, problem = V.metrics_rows(run.metrics_path)
    record = RunRecord(path, arm, seed, config, metrics, summary)
    record.problem = problem and f"{V.shown(run.metrics_path)}: {problem}"
    return record


def _checked(path: Path, problem: Callable[[object], str | None]):
    """The JSON in ``path`` if ``problem`` finds none; else Unusable("<path>: <what is wrong>")."""
    try:
        value = V.read_json_file(path)
    except V.Unusable as e:
        raise V.Unusable(f"{V.shown(path)}: {e}") from None
    reason = problem(value)
    if reason:
        raise V.Unusable(f"{V.shown(path)}: {reason}")
    return value


def read_run(path: Path, arm: str, seed: int | None, note: Note, pretraining: bool | None = False) -> RunRecord | None:
    """The run in ``path``, or None when it holds no run files or is skipped (with a note saying why)."""
    try:
        record = _read_run(path, arm, seed, pretraining)
    except V.Unusable as e:
        note(f"{e}; run left out of the report")
        return None
    if record is not None and record.problem:
        note(record.problem)
    return record


def _seed_dirs(folder: Path, note: Note) -> list[tuple[int, Path]]:
    """(seed, folder) of every seed-<n> folder, sorted; of two folders with one seed (seed-7 and
    seed-007) the first by name is kept and the other named in a note."""
    if not folder.is_dir():
        return []
    try:
        found = sorted((int(m.group(1)), p.name, p) for p in folder.iterdir()
                       if (m := SEED_DIR.match(p.name)) and p.is_dir())
    except OSError as e:
        note(f"{V.shown(folder)} cannot be listed ({V.shown(e.strerror or e)}); its runs are left out")
        return []
    seeds: dict[int, Path] = {}
    for seed, _, path in found:
        if seed in seeds:
            note(f"{V.shown(path)} is seed {seed} again (as {V.shown(seeds[seed].name)}); left out of the report")
        else:
            seeds[seed] = path
    return sorted(seeds.items())


def _fingerprint(r: RunRecord) -> str | None:
    # A run in progress has no summary yet, but its config.json records the data's fingerprint.
    return ((r.summary or {}).get("dataset") or {}).get("fingerprint") or r.config.get("dataset_fingerprint")


def _check_one_dataset(records: list[RunRecord], root: Path) -> None:
    first: tuple[str, str] | None = None
    for r in records:
        fingerprint = _fingerprint(r)
        if fingerprint is None:
            continue
        if first is None:
            first = (r.label, fingerprint)
        elif fingerprint != first[1]:
            raise LongtailError(f"{V.shown(root)} mixes runs of different datasets: {V.shown(first[0])} used "
                                f"{V.shown(first[1][:16])}, {V.shown(r.label)} used {V.shown(fingerprint[:16])}")


def _one_class_list(runs: list[RunRecord], note: Note) -> list[RunRecord]:
    """The runs whose finished summary lists the same classes as the first finished one's; each
    other is left out with a note (per-class figures and summed confusion matrices need one list)."""
    first = next((r for r in runs if not r.partial), None)
    kept = []
    for r in runs:
        if r.partial or r is first or r.summary["classes"] == first.summary["classes"]:
            kept.append(r)
        else:
            note(f"{V.shown(r.path / 'summary.json')}: its {len(r.summary['classes'])} classes differ from those "
                 f"of {V.shown(first.label)} ({len(first.summary['classes'])}); run left out of the report")
    return kept


def collect_report_data(root: str | Path, note: Note | None = None) -> ReportData:
    """Everything a report draws from the run store at ``root``. Runs whose files are unusable are
    left out, each with a line to ``note``; LongtailError when nothing is left to report."""
    note = note or (lambda line: None)
    root = Path(root)
    if not root.is_dir():
        why = "it is a file" if root.exists() else "it does not exist"
        raise LongtailError(f"{V.shown(root)} is not a folder ({why})")
    if (root / "runs").is_dir() or (root / "pretrain").is_dir() or (root / "study.json").exists():
        data = _collect_study(root, note)
    else:
        try:
            record = _read_run(root, V.shown(root.resolve().name), None, None)
        except V.Unusable as e:
            raise LongtailError(f"{e}; nothing left to report") from None
        if record is None:
            raise LongtailError(f"no runs found in {V.shown(root)} (expected config.json of a run, or "
                                "runs/<arm>/seed-<n>/ or pretrain/seed-<n>/ of a study)")
        if record.problem:
            note(record.problem)
        if "task" in record.config:  # a pretraining run
            data = ReportData(root, "run", record.arm, [], [], pretrain=[record])
        else:
            data = ReportData(root, "run", record.arm, [record.arm], [record])
    _check_one_dataset(data.runs + data.pretrain, root)
    data.runs = _one_class_list(data.runs, note)
    summaries: dict[str, dict[int, dict]] = {}
    for r in data.runs:
        if not r.partial:
            summaries.setdefault(r.arm, {})[r.seed if r.seed is not None else 0] = r.summary
    data.aggregate = aggregate_runs({a: summaries[a] for a in data.arms if a in summaries},
                                    data.baselines if data.baselines else
                                    data.baseline if data.baseline in summaries else None, data.reference)
    data.classes = next((r.summary["classes"] for r in data.runs if not r.partial), [])
    return data


def _study_file(root: Path, note: Note) -> dict:
    """study.json's name, arms, baseline and baselines, each only when it has the right type; the
    report is still made without them (arms in folder order, no baseline), with a note."""
    path = root / "study.json"
    if not (path.exists() or path.is_symlink()):
        return {}
    try:
        study = V.read_json_file(path)
    except V.Unusable as e:
        note(f"{V.shown(path)}: {e}; ignored (arms in folder order, no baseline)")
        return {}
    if not isinstance(study, dict):
        note(f"{V.shown(path)}: {V.kind(study)}, not a JSON object; ignored (arms in folder order, no baseline)")
        return {}
    checks = {"name": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
              "arms": lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
              "baseline": lambda v: isinstance(v, str),
              "reference": lambda v: isinstance(v, str),
              "baselines": lambda v: isinstance(v, dict) and all(isinstance(b, str) for b in v.values())}
    kept = {}
    for key, ok in checks.items():
        if key not in study or study[key] is None:
            continue
        if ok(study[key]):
            kept[key] = study[key]
        else:
            note(f"{V.shown(path)}: {key!r} is {V.kind(study[key])} of the wrong shape; ignored")
    return kept


def _arm_dirs(runs_dir: Path, note: Note) -> list[str]:
    if not runs_dir.is_dir():
        return []
    try:
        return sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
    except OSError as e:
        note(f"{V.shown(runs_dir)} cannot be listed ({V.shown(e.strerror or e)}); its runs are left out")
        return []


def _collect_study(root: Path, note: Note) -> ReportData:
    study = _study_file(root, note)
    runs_dir = root / "runs"
    found_arms = _arm_dirs(runs_dir, note)
    listed = study.get("arms", [])
    arms = [a for a in listed if a in found_arms] + [a for a in found_arms if a not in listed]
    runs = []
    for arm in arms:
        for seed, path in _seed_dirs(runs_dir / arm, note):
            record = read_run(path, V.shown(arm), seed, note)
            if record is not None:
                runs.append(record)
    pretrain = [r for name, folder in _pretraining_dirs(root / "pretrain", note)
                for seed, path in _seed_dirs(folder, note)
                if (r := read_run(path, name, seed, note, pretraining=True))]
    if not runs and not pretrain:
        raise LongtailError(f"no runs found in {V.shown(root)} (no runs/<arm>/seed-<n>/ or pretrain/seed-<n>/ "
                            "folder holds a usable run)")
    arms = list(dict.fromkeys(r.arm for r in runs))
    baseline = study.get("baseline", "imbalanced" if "imbalanced" in arms else None)
    return ReportData(root, "study", V.shown(study.get("name", root.resolve().name)), arms, runs, pretrain, baseline,
                      baselines=study.get("baselines"), reference=study.get("reference"))


def _pretraining_dirs(folder: Path, note: Note) -> list[tuple[str, Path]]:
    """(label, folder of seed-<n> folders): a study's single pretraining (pretrain/seed-<n>/, label
    "pretrain") and its named ones (pretrain/<name>/seed-<n>/, label "pretrain:<name>")."""
    named = [(f"pretrain:{V.shown(name)}", folder / name) for name in _arm_dirs(folder, note)
             if not SEED_DIR.match(name)]
    return [("pretrain", folder), *named]


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
