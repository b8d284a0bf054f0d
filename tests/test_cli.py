"""The command line: help, data info, and bad input as one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from longtail.cli import main
from tests.conftest import make_image_folder


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "longtail", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "data" in r.stdout
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "--recipe" in r.stdout and "--limit-train" in r.stdout


def test_data_info_prints_counts(cifar_zip, capsys):
    assert main(["data", "info", "--data", str(cifar_zip), "--imbalance", "step:10"]) == 0
    out = capsys.readouterr().out
    assert "airplane" in out and "4500" in out and "450" in out and "3x32x32" in out


def _one_line_error(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("longtail: error:") and "\n" not in err and "Traceback" not in err
    assert needle in err, err


@pytest.mark.parametrize("argv,needle", [
    (["train", "--data", "/nonexistent/path", "--out", "{tmp}/r"], "not found"),
    (["train", "--data", "{tmp}/data", "--out", "{tmp}/r", "--recipe", "turbo"], "unknown recipe"),
    (["train", "--data", "{tmp}/data", "--out", "{tmp}/r", "--loss", "nope"], "unknown loss"),
    (["train", "--data", "{tmp}/data", "--out", "{tmp}/r", "--augment", "spin"], "unknown augmentation"),
    (["train", "--data", "{tmp}/data", "--out", "{tmp}/r", "--epochs", "-1"], "epochs in the command line must be >= 1"),
    (["train", "--data", "{tmp}/data", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"], "not found"),
    (["data", "info", "--data", "{tmp}/notzip.txt"], "neither a folder nor a zip"),
    (["data", "info", "--data", "{tmp}/empty.zip"], "no train/"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    make_image_folder(tmp_path / "data", classes=2, per_class=4)
    (tmp_path / "notzip.txt").write_text("hello")
    import zipfile
    zipfile.ZipFile(tmp_path / "empty.zip", "w").close()
    _one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], needle)
    assert not (tmp_path / "r" / "summary.json").exists()


def test_unknown_option_is_one_line():
    r = run_cli("train", "--epochz", "3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--epochz" in r.stderr


def test_train_from_cli_with_toml(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=12)
    toml = tmp_path / "run.toml"
    toml.write_text('recipe = "seed"\nepochs = 1\nbatch_size = 8\nval_size = 4\nquiet = true\n')
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--config", str(toml)]) == 0
    assert "test acc" in capsys.readouterr().out
    assert (tmp_path / "r" / "summary.json").exists()


def test_data_info_counts_the_files_it_skipped(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", classes=2, per_class=4)
    (root / "train" / "class0" / "README.txt").write_text("notes")
    (root / "train" / "class1" / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "test" / "class1" / "notes.md").write_text("more notes")
    assert main(["data", "info", "--data", str(root)]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("skipped")]
    assert len(line) == 1 and line[0].startswith("skipped 3 files: ") and "not an image" in line[0], line
