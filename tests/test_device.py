"""The CUDA path as far as a CPU-only machine can exercise it: device and precision choice, and
data placement (the whole uint8 dataset moved to the loader's device once, batches made there)."""

import pytest
import torch

from longtail import device as dev
from longtail.data.loader import BatchLoader
from longtail.errors import LongtailError


def test_auto_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dev.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert dev.resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_auto_is_cpu_without_cuda_and_cuda_request_fails(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto").type == "cpu"
    with pytest.raises(LongtailError, match="no CUDA device"):
        dev.resolve_device("cuda")


def test_cpu_precision_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    assert dev.resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: True)
    assert dev.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert dev.resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_loader_holds_data_on_its_device_and_yields_batches_there():
    # 'meta' stands in for an accelerator: the loader must move the dataset there once and never
    # build a batch on the host.
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(10, dtype=torch.long), 4, mean=[0.5] * 3, std=[0.2] * 3,
                         device="meta", shuffle=True)
    assert loader.images.device.type == "meta" and loader.labels.device.type == "meta"
    x, y = next(loader.epoch(0))
    assert x.device.type == "meta" and y.device.type == "meta" and x.dtype == torch.float32
    assert x.shape == (4, 3, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_runs_on_gpu():
    from longtail.models.seed_cnn import SeedCNN

    model = SeedCNN().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with dev.autocast(torch.device("cuda"), "bf16"):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert model.conv1.weight.grad.device.type == "cuda"
