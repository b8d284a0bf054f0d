"""longtail: class-imbalanced image classification and jigsaw pretraining, fast on a CPU."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    # Imported on first use, so `import longtail` (and every CLI command) stays light: only code
    # that asks for the model pays for torch and the model registry.
    if name == "load_model":
        from longtail.inference import load_model

        return load_model
    raise AttributeError(f"module 'longtail' has no attribute {name!r}")
