"""The jigsaw pretext task: tiles, Sinkhorn, decoding, metrics, and the objective the jigsaw task trains."""

from longtail.jigsaw.decode import decode
from longtail.jigsaw.metrics import jigsaw_metrics
from longtail.jigsaw.sinkhorn import log_sinkhorn, sinkhorn
from longtail.jigsaw.objective import JigsawObjective, permutation_bce
from longtail.jigsaw.tiles import TileOptions, make_puzzles, reassemble

__all__ = ["JigsawObjective", "TileOptions", "decode", "jigsaw_metrics", "log_sinkhorn", "make_puzzles",
           "permutation_bce", "reassemble", "sinkhorn"]
