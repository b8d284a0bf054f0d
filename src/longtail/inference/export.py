"""``longtail export``: a self-contained TorchScript or ONNX file with the preprocessing inside."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import torch

from longtail.errors import LongtailError
from longtail.inference.model import PortableClassifier, build_classifier, open_run
from longtail.runs import atomic_write

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
# marks an exported file as longtail's (an extra file in a TorchScript zip, a metadata key in ONNX)
EXPORT_MARK = "longtail.json"
ONNX_EXTRA = "pip install 'longtail[onnx]'"


def export(run: Path | str, fmt: str, out: Path | str | None = None) -> Path:
    """Write the run's model, preprocessing inside, as a TorchScript or ONNX file; returns its path.

    Both take uint8 images (N, C, H, W) at the run's image size; TorchScript also takes float
    images in [0, 1], and resizes others when the run has an image size. Both compute in float32."""
    if fmt not in FORMATS:
        raise LongtailError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    finished = open_run(run, "export")
    path = Path(out) if out is not None else finished.path / f"model{SUFFIXES[fmt]}"
    if path.exists() and not (path.is_file() and _is_our_export(path, fmt)):
        raise LongtailError(f"{path} exists and is not a model longtail exported; choose another --out")
    model = build_classifier(finished, "fp32", "cpu").portable()
    mark = {"kind": "longtail-export", "run": str(finished.path), "classes": model.classes,
            "input": "uint8 (N, C, H, W) in [0, 255] or float in [0, 1]",
            "image_shape": [model.preprocess.channels, model.preprocess.height, model.preprocess.width],
            "output": "logits, post-hoc logit adjustment applied; softmax gives probabilities"}
    data = _torchscript_bytes(model, mark) if fmt == "torchscript" else _onnx_bytes(model, mark)
    atomic_write(path, lambda f: f.write(data))
    return path


def _example(model: PortableClassifier, batch: int = 2) -> torch.Tensor:
    pre = model.preprocess
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, pre.channels, pre.height, pre.width), dtype=torch.uint8, generator=g)


def _torchscript_bytes(model: PortableClassifier, mark: dict) -> bytes:
    # The network is traced (any architecture the registry builds traces; not all would script);
    # the wrapper is scripted, so its branches on dtype and size stay branches.
    pre = model.preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still loads everywhere
        traced = torch.jit.trace(model.net, pre(_example(model)), check_trace=False)
        scripted = torch.jit.script(PortableClassifier(traced, pre, model.classes, model.logit_adjustment,
                                                     float(model.logit_scale)).eval())
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={EXPORT_MARK: json.dumps(mark)})
    return buffer.getvalue()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401 - torch.onnx.export's exporter needs it
    except ImportError as e:
        raise LongtailError(f"--format onnx needs the optional extra ({e.name} is not installed): "
                            f"{ONNX_EXTRA}") from None


def _onnx_bytes(model: PortableClassifier, mark: dict) -> bytes:
    import onnx

    example = _example(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False,
                                    verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {EXPORT_MARK: json.dumps(mark)})
    return proto.SerializeToString()


def _is_our_export(path: Path, fmt: str) -> bool:
    if fmt == "torchscript":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(f"/extra/{EXPORT_MARK}") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return any(p.key == EXPORT_MARK for p in proto.metadata_props)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
