"""longtail: class-imbalanced image classification and jigsaw pretraining, fast on a CPU."""

__version__ = "0.1.0"
