"""An attack on ``longtail report DIR`` from outside: hostile and malformed run stores, each given to
the real command line (``python -m longtail report DIR``) in its own process.

Every case must end with the exit code it names (0: a report, 2: one error line), print nothing on
stderr but ``longtail: note:`` lines and at most one ``longtail: error:`` line (no traceback, no
warning), leave every file that was there before unchanged (hashes of the whole case folder, links
not followed, so files outside DIR that a link points to are watched too) except the files an
earlier report recorded as its own, and, when it writes a page, keep every string escaped.

The cases are built from one small valid study (one arm, two seeds, three classes, no training),
copied per case, in one module fixture; see ZYGOTE for how the command is run cheaply, and
LONGTAIL_ATTACK_COMMAND=1 to run every case as the literal command line instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import longtail
from test_report import fake_run

CLASSES = ["cat", "dog", "eel"]
RECORD = ".longtail-report.json"
PARALLEL = 2  # reports drawn at once
CASE_TIMEOUT_S = 120  # one case (a report takes a few seconds)
TIMEOUT_S = 900  # all of them
MEMORY = 4 << 30  # address space a case may add to what importing longtail's report takes
IMPORTED = 6 << 30  # address space of a process that has imported it (torch maps ~4 GiB)


def base_study(root: Path) -> Path:
    """One arm 'a', seeds 0 and 1, finished; and study.json."""
    for seed, accs in ((0, (0.4, 0.5)), (1, (0.45, 0.55))):
        fake_run(root / "runs" / "a" / f"seed-{seed}", accs=accs, classes=CLASSES, config={"seed": seed},
                 kept=[10, 100, 100])
    (root / "study.json").write_text(json.dumps({"name": "attack", "arms": ["a"]}))
    return root


def summary(root: Path, seed: int = 1, arm: str = "a") -> Path:
    return root / "runs" / arm / f"seed-{seed}" / "summary.json"


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def edit_summary(change: Callable[[dict], object], seed: int = 1) -> Callable[[Path], None]:
    return lambda root: edit_json(summary(root, seed), change)


def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return make


def replace_in(rel: str, pattern: str, new: str) -> Callable[[Path], None]:
    """Replace ``pattern`` (a regular expression) in the text of ``rel``: JSON no dumps would write."""
    def make(root: Path) -> None:
        path = root / rel
        path.write_text(re.sub(pattern, new, path.read_text(), count=1))
    return make


def each(*makes: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        for m in makes:
            m(root)
    return make


def add_arm(name: str | bytes, classes=CLASSES, config=None) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        runs = os.fsencode(root / "runs")
        folder = Path(os.fsdecode(os.path.join(runs, os.fsencode(name) if isinstance(name, str) else name)))
        fake_run(folder / "seed-0", classes=classes, config={"seed": 0, **(config or {})})
    return make


def link(rel: str, target: Callable[[Path], Path]) -> Callable[[Path], None]:
    """``rel`` in DIR becomes a symbolic link to ``target(DIR)``."""
    def make(root: Path) -> None:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target(root))
    return make


def outside(root: Path) -> Path:
    """A folder beside DIR, inside the case folder (watched by the hashes, never DIR's)."""
    return root.parent / "outside"


def outside_file(name: str, content: str) -> Callable[[Path], Path]:
    def target(root: Path) -> Path:
        outside(root).mkdir(exist_ok=True)
        (outside(root) / name).write_text(content)
        return outside(root) / name
    return target


def outside_run(root: Path) -> Path:
    fake_run(outside(root) / "run", classes=CLASSES, config={"seed": 2})
    return outside(root) / "run"


def reported(then: Callable[[Path], None] = lambda root: None) -> Callable[[Path], None]:
    """A report made in-process first (its files are longtail's), then ``then``."""
    def make(root: Path) -> None:
        from longtail.report import write_report

        write_report(root)
        then(root)
    return make


def add_to_record(files: dict[str, list[str]]) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / RECORD
        record = json.loads(path.read_text()) if path.exists() else {"format": "longtail-report-files/1", "files": {}}
        path.write_text(json.dumps({**record, "files": {**record["files"], **files}}))
    return make


def hostile_checkpoint(root: Path) -> None:
    """A pretraining run whose checkpoint claims a net of a billion channels."""
    import torch

    from longtail.runs import save_checkpoint

    run = root / "pretrain" / "seed-0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "jigsaw", "seed": 0, "data": str(root / "nothing")}))
    arch = {"name": "JigsawNet", "in_channels": 3, "grid": 2, "tile_size": [16, 16], "width": [10**9, 64, 64]}
    save_checkpoint(run / "checkpoint.pt", {"kind": "jigsaw", "arch": arch, "model": {"x": torch.zeros(1)},
                                            "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3}})


def many_classes(root: Path) -> None:
    names = [f"class {j} " + "x" * 3000 for j in range(120)]  # 120 classes, each name 3,000 characters
    for seed in (0, 1):
        fake_run(root / "runs" / "wide" / f"seed-{seed}", classes=names, config={"seed": seed})
    shutil.rmtree(root / "runs" / "a")


def one_epoch(root: Path) -> None:
    shutil.rmtree(root / "runs")
    for seed in (0, 1, 2):
        fake_run(root / "runs" / "a" / f"seed-{seed}", accs=(0.3 + seed / 10,), classes=CLASSES, config={"seed": seed})


def unfinished(root: Path) -> None:
    for seed in (0, 1):
        summary(root, seed).unlink()


def init_arm_of_odd_figures(root: Path) -> None:
    """Arm 'j' pairs with 'a' as jigsaw init with random init, its summaries lacking the optional
    best-over-epochs figure and holding a hand-edited layer map."""
    transfer = {"freeze": "maybe", "checkpoint": EVIL, "layers": [
        {"name": "<b>conv1</b>", "shape": 5, "status": None, "from": ["x"]}, {}, {"shape": {"a": 1}}]}
    for seed in (0, 1):
        fake_run(root / "runs" / "j" / f"seed-{seed}", classes=CLASSES, config={"seed": seed, "init": "pre/checkpoint.pt"})
        edit_json(summary(root, seed, "j"), lambda s: {**{k: v for k, v in s.items() if k != "best_test_acc_over_epochs"},
                                                       "transfer": transfer})


def pretraining_of_nulls(root: Path) -> None:
    run = root / "pretrain" / "seed-0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "jigsaw", "seed": 0, "epochs": [EVIL]}))
    (run / "metrics.jsonl").write_text('{"epoch": 1, "val_puzzle_acc_argmax": null, "val_confidence": 0.5}\n')
    (run / "summary.json").write_text(json.dumps({"epochs": {"x": EVIL}, "test_puzzle_acc_argmax": None,
                                                  "best_over_epochs": {"val_puzzle_acc_argmax": None}}))


def fifo(rel: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / rel).unlink()
        os.mkfifo(root / rel)
    return make


def deep(n: int) -> str:
    return "[" * n + "]" * n


EVIL = "<img src=x onerror=alert(1)>"


@dataclass
class Case:
    kind: str
    make: Callable[[Path], None]
    code: int
    says: str = ""  # a piece of stderr
    page: str = ""  # a piece of report.html (when code is 0)
    not_in_page: str = ""
    dir: str = "s"  # DIR, relative to the case folder


CASES = {
    # numbers
    "accuracy 1e308": Case("numbers", edit_summary(lambda s: {**s, "test_acc": 1e308}), 0,
                           "'test_acc' is 1e+308, not a number from 0 to 1"),
    "integer of 400 digits": Case("numbers", replace_in("runs/a/seed-1/summary.json", r'"test_acc": [^,]*',
                                                        '"test_acc": 1' + "0" * 400), 0, "not a number from 0 to 1"),
    "integer of 5,000 digits": Case("numbers", write("runs/a/seed-1/summary.json", '{"test_acc": ' + "9" * 5000 + "}"),
                                    0, "summary.json: not valid JSON"),
    "negative class counts": Case("numbers", edit_summary(lambda s: {**s, "kept_class_counts": [-5, 100, 100]}), 0,
                                  "'kept_class_counts' is not a list of 3 image counts"),
    "NaN and Infinity": Case("numbers", replace_in("runs/a/seed-1/summary.json", r'"test_acc": [^,]*',
                                                   '"x": Infinity, "test_acc": NaN'), 0, "'test_acc' is NaN"),
    "metrics of huge and negative epochs and losses": Case("numbers", write("runs/a/seed-0/metrics.jsonl", "\n".join([
        '{"epoch": 1, "val_loss": 1e300, "val_acc": 0.4}', '{"epoch": -3, "val_loss": 1}',
        '{"epoch": 99999999999999999999, "val_acc": 0.5}', '{"epoch": 2, "val_loss": -1e200, "val_acc": Infinity}'])),
        0, "2 line(s) left out (line 2 has no epoch number, …); 3 value(s) that are not finite numbers"),
    # shapes
    "confusion of the wrong shape": Case("shapes", edit_summary(lambda s: {**s, "confusion": [[1, 2], [3, 4], [5, 6]]}), 0,
                                         "'confusion' is not a 3 x 3 matrix"),
    "other classes in one seed": Case("shapes", edit_summary(lambda s: {**s, "classes": ["x", "y", "z"]}), 0,
                                      "its 3 classes differ from those of a seed 0"),
    "two folders of one seed": Case("shapes", lambda root: shutil.copytree(root / "runs/a/seed-1", root / "runs/a/seed-01"),
                                    0, "is seed 1 again (as seed-01)"),
    # escaping
    "HTML in an arm name": Case("escaping", add_arm(EVIL), 0, page="&lt;img src=x onerror=alert(1)&gt;",
                                not_in_page="<img src=x"),
    "HTML in class names": Case("escaping", lambda root: [edit_json(summary(root, s), lambda d: {
        **d, "classes": ["</title><script>alert(1)</script>", "a&b", '"q"']}) for s in (0, 1)], 0,
        page="&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
    "HTML in the study name and settings": Case("escaping", each(
        write("study.json", json.dumps({"name": "</title><script>x()</script>", "arms": ["a"]})),
        lambda root: edit_json(root / "runs/a/seed-0/config.json", lambda c: {**c, "imbalance": EVIL})), 0,
        page="<title>&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt; - longtail report</title>"),
    "comment and CDATA breakers in class names": Case("escaping", lambda root: [edit_json(summary(root, s), lambda d: {
        **d, "classes": ["--><svg onload=alert(1)>", "]]><x>", "$\\frac{1}{0}$"]}) for s in (0, 1)], 0),
    # unicode
    "unicode arm and class names": Case("unicode", each(add_arm("猫-🐈-שלום"), lambda root: [edit_json(
        summary(root, s), lambda d: {**d, "classes": ["猫", "e\u0301", "\u202eevil"]}) for s in (0, 1)]), 0,
        page="猫-🐈-שלום"),
    "an arm folder whose name is not UTF-8": Case("unicode", add_arm(b"arm-\xff\xfe"), 0, page="arm-\ufffd\ufffd"),
    "a newline in a folder name": Case("unicode", each(add_arm("two\nlines"),
                                                       write("runs/two\nlines/seed-0/summary.json", "[]")), 0,
                                       "runs/two\\nlines/seed-0/summary.json: a JSON list"),
    "a lone surrogate in a class name": Case("unicode", lambda root: [write(
        f"runs/a/seed-{s}/summary.json", summary(root, s).read_text().replace('"eel"', '"e\\ud800l"'))(root)
        for s in (0, 1)], 0),
    # junk
    "config nested 100,000 deep": Case("junk", write("runs/a/seed-1/config.json", deep(100_000)), 0,
                                       "config.json: not valid JSON (nested deeper than 32 levels)"),
    "metrics of random bytes": Case("junk", write("runs/a/seed-0/metrics.jsonl", bytes(set(range(256)) - {10}) * 8), 0,
                                    "metrics.jsonl: 1 line(s) left out"),
    "study.json of junk": Case("junk", write("study.json", json.dumps({"name": [1], "arms": {"a": 1},
                                                                         "baselines": "a", "baseline": None})), 0,
                               "study.json: 'name' is a JSON list of the wrong shape; ignored"),
    "zero-length files": Case("junk", each(write("runs/a/seed-1/summary.json", ""), write("runs/a/seed-1/config.json", ""),
                                           write("runs/a/seed-0/metrics.jsonl", ""), write("study.json", ""),
                                           write("aggregate.json", ""), write("pretrain/seed-0/config.json", '{"task": 1}'),
                                           write("pretrain/seed-0/checkpoint.pt", b"")), 0,
                              "is not a loadable longtail checkpoint"),
    "every run unusable": Case("junk", each(write("runs/a/seed-0/summary.json", "{}"),
                                            write("runs/a/seed-1/config.json", "7")), 2,
                               "folder holds a usable run"),
    # the file system
    "summary linked to a file outside": Case("files", link("runs/a/seed-1/summary.json", outside_file("s.json", "[1]")),
                                             0, "summary.json: a JSON list"),
    "summary linked to /dev/zero": Case("files", link("runs/a/seed-1/summary.json", lambda root: Path("/dev/zero")), 0,
                                        "summary.json: not a regular file"),
    "summary that is a named pipe": Case("files", fifo("runs/a/seed-1/summary.json"), 0,
                                         "summary.json: not a regular file"),
    "a seed folder linked to a run outside": Case("files", link("runs/a/seed-2", outside_run), 0,
                                                  page="<td>a</td><td>3</td>"),
    "a seed folder linked to itself": Case("files", link("runs/a/seed-3", lambda root: root / "runs/a/seed-3"), 0),
    "report.html linked to a file outside": Case("files", link("report.html", outside_file("page.html", "mine")), 2,
                                                 "report.html was not written by longtail"),
    "figures linked to a folder outside with a user's figure": Case("files", link(
        "figures", lambda root: outside_file("results.svg", "<svg/>")(root).parent), 2,
        "figures/results.svg was not written by longtail"),
    "the record names files outside": Case("files", reported(each(
        write("precious.txt", "keep"), lambda root: outside_file("keep.txt", "keep")(root),
        add_to_record({name: [hashlib.sha256(b"keep").hexdigest()]
                       for name in ("precious.txt", "../outside/keep.txt", "figures/../precious.txt")}))), 0),
    "DIR is a file": Case("files", write("file", "x"), 2, "is not a folder (it is a file)", dir="s/file"),
    # runs
    "one-epoch runs": Case("runs", one_epoch, 0, page="<td>a</td><td>3</td>"),
    "no finished run": Case("runs", unfinished, 0, "2 run(s) without summary.json drawn as partial",
                            page="No finished runs yet"),
    "120 classes of long names": Case("runs", many_classes, 0),
    "a hostile pretraining checkpoint": Case("runs", hostile_checkpoint, 0,
                                             "puzzle examples skipped: ", page="Puzzle examples skipped"),
    "paired arms without the optional figures, an odd layer map": Case(
        "runs", init_arm_of_odd_figures, 0, page="&lt;b&gt;conv1&lt;/b&gt;", not_in_page="<b>"),
    "a pretraining run of nulls": Case("runs", pretraining_of_nulls, 0, page="Homework 03, figure 3",
                                       not_in_page="<img src=x"),
    "runs of two datasets": Case("runs", lambda root: fake_run(root / "runs/b/seed-0", classes=CLASSES, fingerprint="f" * 64), 2,
                                 "mixes runs of different datasets"),
}


def snapshot(folder: Path) -> dict[str, str]:
    """Path -> sha256 of every file under ``folder``, links recorded by target, not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow links to folders
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = os.fsencode(path.relative_to(folder)).decode("utf-8", "backslashreplace")
            if path.is_symlink():
                out[rel] = "link -> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not path.is_dir():
                out[rel] = "special file"
    return out


def recorded(root: Path) -> set[str]:
    """The files an earlier report recorded as its own and that are unchanged: the report may
    replace or remove them. Read here by the rules owned.py states, not by its code."""
    try:
        record = json.loads((root / RECORD).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    ours = set()
    for name, hashes in files.items():
        path = root / name
        if re.fullmatch(r"report\.html|figures/[A-Za-z0-9_-][A-Za-z0-9._-]*\.(svg|pdf)", name) and \
                path.is_file() and not path.is_symlink() and hashlib.sha256(path.read_bytes()).hexdigest() in hashes:
            ours.add(name)
    return ours | {RECORD}


@dataclass
class Outcome:
    folder: Path
    root: Path
    code: int
    out: str
    err: str
    before: dict[str, str]
    after: dict[str, str]
    may_change: set[str]


# One process imports longtail's report once, then forks a child per case that runs longtail's
# __main__ exactly as `python -m longtail report DIR` does (runpy, fresh argv, stdout and stderr on
# files, the exit status the process would have, a traceback printed as the interpreter would): a
# process start costs ~4 s of CPU here, nearly all of it importing torch, and a case ~1 s. A few
# cases also run as the literal command, and must end the same (test_the_forked_runs_are_the_command).
ZYGOTE = """
import json, os, resource, runpy, signal, sys, traceback
import longtail.cli, longtail.report, longtail.report.html, longtail.report.puzzles
parallel, case_timeout, more_memory = map(int, sys.argv[1:4])
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
requests = [json.loads(line) for line in sys.stdin]
running = {}

def reap():
    pid, status = os.wait()
    print(json.dumps({"name": running.pop(pid)["name"], "code": os.waitstatus_to_exitcode(status)}), flush=True)

for request in requests:
    while len(running) >= parallel:
        reap()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, path in ((1, request["out"]), (2, request["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.stdin = open(os.devnull)
        # a case that hangs or allocates without end fails alone, and cannot take the machine with it
        signal.alarm(case_timeout)
        resource.setrlimit(resource.RLIMIT_AS, (size + more_memory, size + more_memory))
        sys.argv = [os.path.join(os.path.dirname(longtail.__file__), "__main__.py"), *request["argv"]]
        code = 0
        try:
            runpy.run_module("longtail", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = request
while running:
    reap()
"""


def _env() -> dict[str, str]:
    src = str(Path(longtail.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _prepare(folder: Path, case: Case) -> tuple[Path, dict[str, str], set[str]]:
    root = folder / case.dir
    prefix = os.path.relpath(root, folder)
    may_change = {os.path.normpath(os.path.join(prefix, n)) for n in recorded(root)} if root.is_dir() else set()
    return root, snapshot(folder), may_change


def run_forked(folders: dict[str, Path]) -> dict[str, Outcome]:
    """Every case through ZYGOTE, PARALLEL at a time."""
    prepared = {name: _prepare(folder, CASES[name]) for name, folder in folders.items()}
    requests = "".join(json.dumps({"name": name, "argv": ["report", str(prepared[name][0])],
                                   "out": str(folder.parent / f"{folder.name}.out"),
                                   "err": str(folder.parent / f"{folder.name}.err")}) + "\n"
                       for name, folder in folders.items())
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(PARALLEL), str(CASE_TIMEOUT_S), str(MEMORY)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                              start_new_session=True)  # its own process group: one kill ends every child
    try:
        out, err = zygote.communicate(requests.encode(), timeout=TIMEOUT_S)
    finally:  # children left by a zygote that timed out or failed
        try:
            os.killpg(zygote.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert zygote.returncode == 0, err.decode(errors="replace")
    codes = {r["name"]: r["code"] for r in map(json.loads, out.decode().splitlines())}
    outcomes = {}
    for name, folder in folders.items():
        root, before, may_change = prepared[name]
        out, err = (Path(folder.parent / f"{folder.name}.{k}").read_bytes().decode("utf-8", "replace")
                    for k in ("out", "err"))
        outcomes[name] = Outcome(folder, root, codes[name], out, err, before, snapshot(folder), may_change)
    return outcomes


def run_command(folder: Path, case: Case) -> Outcome:
    """One case as the literal command line, in a process of its own."""
    root, before, may_change = _prepare(folder, case)
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (IMPORTED + MEMORY, IMPORTED + MEMORY))

    done = subprocess.run([sys.executable, "-m", "longtail", "report", str(root)], capture_output=True, env=_env(),
                          timeout=CASE_TIMEOUT_S, stdin=subprocess.DEVNULL, preexec_fn=limit_memory)
    return Outcome(folder, root, done.returncode, done.stdout.decode("utf-8", "replace"),
                   done.stderr.decode("utf-8", "replace"), before, snapshot(folder), may_change)


# Also run as the literal command: one that writes a page, one refused, one hostile to the reader.
LITERAL = ["HTML in an arm name", "every run unusable", "summary that is a named pipe"]


def _build(factory, name: str, n: int, template: Path) -> Path:
    folder = factory.mktemp(f"case{n:02d}")
    shutil.copytree(template, folder / "s", symlinks=True)
    CASES[name].make(folder / "s")
    return folder


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    template = base_study(tmp_path_factory.mktemp("attack") / "template")
    folders = {name: _build(tmp_path_factory, name, n, template) for n, name in enumerate(CASES)}
    if os.environ.get("LONGTAIL_ATTACK_COMMAND"):  # every case as the literal command (slow)
        return {name: run_command(folder, CASES[name]) for name, folder in folders.items()}
    return run_forked(folders)


@pytest.fixture(scope="module")
def command_outcomes(tmp_path_factory) -> dict[str, Outcome]:
    template = base_study(tmp_path_factory.mktemp("attack-command") / "template")
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(run_command, _build(tmp_path_factory, name, n, template), CASES[name])
                   for n, name in enumerate(LITERAL)}
        return {name: f.result() for name, f in futures.items()}


def test_the_forked_runs_are_the_command(outcomes, command_outcomes):
    for name, literal in command_outcomes.items():
        forked = outcomes[name]
        assert literal.code == forked.code, name
        assert literal.err.replace(str(literal.folder), "CASE") == forked.err.replace(str(forked.folder), "CASE"), name
        assert literal.out.replace(str(literal.folder), "CASE") == forked.out.replace(str(forked.folder), "CASE"), name


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]


def test_there_are_enough_cases_of_every_kind():
    kinds = {}
    for case in CASES.values():
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
    assert len(CASES) >= 25 and all(n >= 3 for n in kinds.values()), kinds


@pytest.mark.parametrize("name", list(CASES))
def test_attack(outcomes, name):
    case, got = CASES[name], outcomes[name]
    lines = got.err.splitlines()
    assert "Traceback" not in got.err and "Warning" not in got.err, got.err
    assert all(line.startswith(("longtail: note: ", "longtail: error: ")) for line in lines), got.err
    errors = [line for line in lines if line.startswith("longtail: error: ")]
    assert got.code == case.code, got.err
    assert len(errors) == (1 if case.code == 2 else 0), got.err
    assert case.says in got.err, got.err
    changed = {p for p, h in got.before.items() if got.after.get(p) != h}
    assert changed <= got.may_change, f"changed or gone: {sorted(changed - got.may_change)}"
    if case.code != 0:
        assert got.out == ""
        return
    assert got.out == f"{got.root / 'report.html'}\n"
    html = (got.root / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html
    assert "<script" not in html.lower() and (not case.not_in_page or case.not_in_page not in html)
    assert case.page in html
    for src in re.findall(r'<img src="([^"]*)"', html):
        assert src.startswith("data:image/svg+xml;base64,"), src[:80]
    for svg in _images(html):
        ET.fromstring(svg)  # well-formed, whatever the names held
        assert b"<script" not in svg.lower()
