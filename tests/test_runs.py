import json
import os

import pytest
import torch

from longtail.errors import LongtailError
from longtail.runs import RunDir, atomic_write, load_checkpoint, save_checkpoint, write_json


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})

    def broken(f):
        f.write(b"{half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_checkpoint_roundtrip_and_refusals(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "epoch": 3})
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 3
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for name in ("foreign.pt", "text.pt", "missing.pt"):
        with pytest.raises(LongtailError):
            load_checkpoint(tmp_path / name)


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": "longtail-checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LongtailError, match="not a loadable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_run_dir_refuses_to_mix_runs(tmp_path):
    run = RunDir(tmp_path / "r")
    config = {"seed": 0, "dataset_fingerprint": "f"}
    run.prepare(config)
    with pytest.raises(LongtailError, match="--resume"):
        RunDir(tmp_path / "r").prepare({**config, "seed": 1})
    run.write_summary({"done": True})
    with pytest.raises(LongtailError, match="finished"):
        RunDir(tmp_path / "r").prepare({**config, "seed": 1})
    assert run.read_config() == config


def test_metrics_rows_roundtrip(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics([{"epoch": 1, "x": 0.5}, {"epoch": 2, "x": 0.25}])
    assert run.read_metrics() == [{"epoch": 1, "x": 0.5}, {"epoch": 2, "x": 0.25}]
