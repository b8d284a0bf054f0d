"""Shared fixtures: the real CIFAR-10 zip (a few thousand images are enough for any test)
and small synthetic image-folder trees."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png

CIFAR_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep tests' decoded-dataset cache out of the user's ~/.cache, but share it across tests."""
    cache = os.environ.get("LONGTAIL_TEST_CACHE") or str(tmp_path_factory.mktemp("longtail-cache"))
    old = os.environ.get("LONGTAIL_DATA")
    os.environ["LONGTAIL_DATA"] = cache
    yield
    if old is None:
        os.environ.pop("LONGTAIL_DATA", None)
    else:
        os.environ["LONGTAIL_DATA"] = old


@pytest.fixture(scope="session")
def cifar_zip() -> Path:
    path = Path(os.environ.get("LONGTAIL_CIFAR_ZIP", CIFAR_ZIP))
    if not path.exists():
        pytest.skip(f"real CIFAR-10 zip not found at {path}")
    return path


@pytest.fixture(scope="session")
def cifar(cifar_zip):
    from longtail.data.sources import load_dataset

    return load_dataset(str(cifar_zip))


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int | tuple[int, int] = 16,
                      channels: int = 3, test_per_class: int | None = None, seed: int = 0,
                      class_names: list[str] | None = None) -> Path:
    """Write train/<class>/*.png and test/<class>/*.png with random pixels; returns ``root``."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    names = class_names or [f"class{j}" for j in range(classes)]
    for split, n in (("train", per_class), ("test", test_per_class or max(2, per_class // 2))):
        for j, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # class-dependent brightness, so a model can learn something
                base = torch.randint(0, 128, (channels, h, w), generator=g, dtype=torch.uint8)
                img = (base + (j * 127) // max(len(names) - 1, 1)).to(torch.uint8)
                (d / f"{i:04d}.png").write_bytes(encode_png(img).numpy().tobytes())
    return root


@pytest.fixture
def tiny_folder():
    return make_image_folder


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes: equal before and after means nothing
    there was removed or changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys, argv: list[str], needle: str) -> str:
    """Run the CLI in-process; assert exit code 2, one ``longtail: error:`` line holding
    ``needle`` and no traceback; return that line."""
    from longtail.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit through SystemExit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("longtail: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


def load_tool(name: str):
    """tools/NAME.py as a module: the scripts are not a package, and their output is what docs quote."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
