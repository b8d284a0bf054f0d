"""The jigsaw pretext task: tiles, Sinkhorn, decoding, metrics, and the task for the training loop."""

from longtail.jigsaw.decode import decode
from longtail.jigsaw.metrics import jigsaw_metrics
from longtail.jigsaw.sinkhorn import log_sinkhorn, sinkhorn
from longtail.jigsaw.task import JigsawTask, permutation_bce
from longtail.jigsaw.tiles import TileOptions, make_puzzles, reassemble

__all__ = ["JigsawTask", "TileOptions", "decode", "jigsaw_metrics", "log_sinkhorn", "make_puzzles",
           "permutation_bce", "reassemble", "sinkhorn"]
