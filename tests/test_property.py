"""Property-based: random small image-folder trees and imbalance profiles never crash the loader
with an unhandled exception, and the kept counts are exactly what the profile says."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longtail.data.imbalance import apply_profile, profile_counts
from longtail.data.sources import load_dataset
from longtail.errors import LongtailError
from tests.conftest import make_image_folder

trees = st.fixed_dictionaries({
    "classes": st.integers(1, 4),
    "per_class": st.integers(1, 6),
    "size": st.tuples(st.integers(12, 20), st.integers(12, 20)),
    "channels": st.sampled_from([1, 3]),
    "seed": st.integers(0, 10_000),
})


@st.composite
def profiles(draw, classes: int, per_class: int):
    kind = draw(st.sampled_from(["step", "exponential", "counts"]))
    if kind == "counts":
        return "counts:" + ",".join(str(draw(st.integers(0, per_class + 1))) for _ in range(classes))
    return f"{kind}:{draw(st.sampled_from(['0', '1', '1.5', '2', '10', '-2']))}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, data=st.data())
def test_loading_and_profiles_never_crash(tree, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_image_folder(Path(tmp) / "d", classes=tree["classes"], per_class=tree["per_class"],
                                 size=tree["size"], channels=tree["channels"], seed=tree["seed"])
        try:
            ds = load_dataset(str(root), cache_dir=Path(tmp) / "cache")
        except LongtailError:
            assert tree["classes"] < 2 or min(tree["size"]) < 16
            return
        assert ds.image_shape == (tree["channels"], *tree["size"])
        spec = data.draw(profiles(ds.num_classes, tree["per_class"]))
        try:
            expected = profile_counts(spec, [tree["per_class"]] * ds.num_classes)
        except LongtailError:
            return
        kept = apply_profile(ds.train_labels, spec, ds.num_classes, torch.Generator().manual_seed(0))
        assert torch.bincount(ds.train_labels[kept], minlength=ds.num_classes).tolist() == expected
        assert len(set(kept.tolist())) == len(kept)
