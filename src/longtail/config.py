"""Run settings: the fields every run shares, and those of classifier and pretraining runs.

Precedence, lowest first: the recipe's defaults, a study table, the TOML file, the command line.
Each field is declared once with :func:`longtail.settings.setting` (help, choices, bounds,
whether it changes the run's numbers); flags, TOML checks and ``--help`` read it from there.
Fields left ``None`` come from the recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.data.options import MAX_SIDE, MIN_SIDE, RESIZE_MODES, ImageSize
from longtail.registry import Registry
from longtail.settings import build, given_values, merge, run_neutral_keys, setting

PRECISIONS = ("bf16", "fp32")  # what a run computes in; "auto" picks one by hardware

SEED_MAX = 2**32 - 1  # derived random streams use 32 bits of each key

# Added to config.json by the run itself: compared on resume, left out when arms are compared.
RECORD_KEYS = ("precision_used", "device_used", "dataset_fingerprint", "world_size")


@dataclass
class RunSettings:
    """What every run has, whatever its task."""

    data: str = setting("cifar10", "dataset: 'cifar10' (downloaded, verified) or an image folder / .zip with "
                        "train/<class>/ and test/<class>/", neutral=True, metavar="PATH")
    out: str | None = setting(None, "run directory to create (config.json, metrics.jsonl, summary.json, "
                              "checkpoint.pt)", neutral=True, metavar="DIR")
    recipe: str = setting("fast", "named defaults for the fields marked 'default from --recipe'")
    epochs: int | None = setting(None, "training epochs", low=1, high=100_000)
    batch_size: int | None = setting(None, "images per step (over all processes under torchrun)", low=1, high=65_536)
    optimizer: str | None = setting(None, "optimizer of the weights (sgd: Nesterov momentum; sgd-momentum: "
                                    "plain momentum, as the long-tail papers' code)", choices="longtail.engine:OPTIMIZERS")
    lr: float | None = setting(None, "peak learning rate", low=0, low_open=True, high=100)
    momentum: float = setting(0.9, "SGD momentum (Nesterov when above 0)", low=0, high=1, high_open=True)
    weight_decay: float | None = setting(None, "L2 weight decay", low=0, high=1)
    schedule: str | None = setting(None, "learning-rate schedule per step", choices="longtail.engine:SCHEDULES")
    augment: list[str] | None = setting(None, "batch augmentations, comma-separated, applied in order (empty: none)",
                                        choices="longtail.data.augment:AUGMENTATIONS")
    precision: str = setting("auto", "auto: bf16 where the hardware multiplies bf16 natively (CUDA, CPUs with "
                             "AVX512-BF16 or AMX), else fp32", choices=("auto", *PRECISIONS), neutral=True)
    device: str = setting("auto", "auto: CUDA when present", choices=("auto", "cpu", "cuda"), neutral=True)
    seed: int = setting(0, "seed for initialisation, data order, augmentation and the imbalance draw",
                        low=0, high=SEED_MAX)
    split_seed: int = setting(0, "seed of the validation split (kept fixed across run seeds)", low=0, high=SEED_MAX)
    val_size: int | None = setting(None, "validation images held out from train (default: 10%, 5,000 for "
                                   "CIFAR-10)", low=1)
    limit_train: int | None = setting(None, "use only N training images (stratified), for quick runs", low=1)
    limit_test: int | None = setting(None, "evaluate on N test images (stratified), for quick runs", low=1)
    # Shared by classifier and pretraining runs: with the same seed, split and limit_train both keep
    # the same training images (summary.json's kept_indices_hash), which a study's data_from relies on.
    imbalance: str | None = setting(None, "remove training samples first: step:RATIO[:CLASSES], "
                                    "exponential:RATIO, counts:N0,N1,... or none (all; a pretraining run draws the same "
                                    "images as a classifier run of the same seed; its labels stay unused)",
                                    choices="longtail.data.imbalance:PROFILES", prefix_choice=True,
                                    metavar="PROFILE:ARGS")
    model: str = setting("seed-cnn", "network: seed-cnn (the seed reports' CNN), resnet32 (He et al.'s CIFAR "
                         "ResNet, as in LDAM-DRW), or tv:NAME, any torchvision classifier by name, untrained (e.g. "
                         "tv:resnet18; docs/models.md); pretraining: rotation trains any of them with a 4-way "
                         "head, jigsaw the trunk of seed-cnn or resnet32", choices="longtail.models:MODELS",
                         prefix_choice=True, metavar="NAME")
    threads: int | None = setting(None, "CPU threads for this process (under torchrun: default, an equal share "
                                  "of the cores); the same seed gives bitwise the same run only at the same "
                                  "thread count", low=1, high=4096, neutral=True)
    checkpoint_every: int | None = setting(None, "also checkpoint every N steps (epochs always end with one)",
                                           low=1, neutral=True)
    quiet: bool = setting(False, "no progress bars or per-epoch lines", neutral=True)
    tensorboard: bool = setting(False, "also write each epoch's metrics as TensorBoard scalars under "
                                "DIR/tensorboard (needs the optional extra: pip install 'longtail[tensorboard]')",
                                neutral=True)
    resume: bool = setting(False, "continue the run in --out from its last checkpoint (its settings must match)",
                           neutral=True)
    # What the data become before any run sees them (data/options.py, docs/data.md).
    image_size: ImageSize | None = setting(None, "resize every image once, as it is decoded, to N x N or HxW px "
                                           "(height x width; --resize says how); needed when the images have "
                                           "several sizes", low=MIN_SIDE, high=MAX_SIDE, metavar="N|HxW")
    resize: str | None = setting(None, "how --image-size resizes: crop (scale the shorter side to fit, keep the "
                                 "centre) or stretch (scale each side to fit); unset: crop", choices=RESIZE_MODES)
    test_fraction: float | None = setting(None, "for data without a test split (train/<class>/ alone, <class>/ "
                                          "folders, one file list): hold out this fraction of every class as the "
                                          "test split, drawn with --split-seed", low=0, low_open=True, high=1,
                                          high_open=True)
    root: str | None = setting(None, "with --data list:TRAIN.txt[,TEST.txt]: the folder the listed paths start "
                               "from (default: the folder of TRAIN.txt)", metavar="DIR")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(RunSettings):
    """Everything that decides a classifier run."""

    recipe: str = setting("fast", "named defaults: 'fast' (SGD one-cycle, crop+flip), 'seed' (the seed "
                          "report's Adam setting), 'lt' (Cao et al. 2019's 200-epoch CIFAR setting) or 'decouple' "
                          "(Kang et al. 2020's classifier stage, the default with --stage)",
                          choices="longtail.config:RECIPES")
    label_smoothing: float | None = setting(None, "label smoothing of the training loss", low=0, high=1,
                                            high_open=True)
    pretrained: str | None = setting(None, "start from a state_dict file you have (e.g. torchvision's ImageNet "
                                     "weights .pth); the classifier layer is skipped when it does not fit",
                                     metavar="FILE")
    padding: str = setting("same", "SeedCNN convolution padding", choices=("same", "valid"))
    head: str | None = setting(None, "last layer: linear (the seed's) or cosine (normalised; what LDAM's s=30 "
                               "assumes); unset: what --loss needs (cosine for ldam-drw, else linear)",
                               choices=("linear", "cosine"))
    rebalance: str = setting("none", "oversampling or sampler (docs/imbalance.md)",
                             choices="longtail.data.rebalance:REBALANCERS")
    loss: str = setting("ce", "training loss (docs/imbalance.md)", choices="longtail.losses:LOSSES")
    loss_params: dict = setting(help="extra loss parameter KEY=VALUE (repeatable), e.g. gamma=2; "
                                "logit-adjust-posthoc's tau=val chooses tau on the validation split",
                                default_factory=dict)
    mix: str = setting("none", "mix pairs of training images (one lambda per batch): mixup (Zhang et al. 2018) "
                       "or remix (Chou et al. 2020; labels favour the rarer class); docs/imbalance.md",
                       choices="longtail.tasks.mixing:MIXES")
    mix_alpha: float = setting(1.0, "with --mix: lambda ~ Beta(alpha, alpha)", low=0, low_open=True, high=1000)
    remix_kappa: float = setting(3.0, "with --mix remix: a pair's label goes wholly to its rarer class when that "
                                 "class is at least kappa times rarer (and --remix-tau holds)", low=1)
    remix_tau: float = setting(0.5, "with --mix remix: ... and the commoner class's share of the mixed image "
                               "(lambda or 1 - lambda) is below tau", low=0, high=1)
    init: str | None = setting(None, "initialise from a run's DIR/checkpoint.pt: a jigsaw pretraining run (a "
                               "seed-cnn trunk by its layer map, a resnet32 trunk by name), a rotation pretraining "
                               "run of the same --model (every tensor of the same name and shape but the 4-way head) "
                               "or a classifier run (every tensor of the same name and shape); in a study, "
                               "'pretrain' or 'pretrain:NAME' is that seed's run of the study's [pretrain] or "
                               "[pretrain.NAME] table; with --stage, the finished classifier run the stage starts from",
                               metavar="CHECKPOINT")
    transfer: str = setting("finetune", "with --init: fine-tune every layer, or freeze the transferred ones",
                            choices=("finetune", "freeze"))
    transfer_lr_scale: float = setting(1.0, "with --init and finetune: the transferred layers' learning rate as a "
                                       "fraction of the others'", low=0, low_open=True, high=100)
    # Not a choices list: the names are the chosen model's top-level layers, checked when the
    # settings are resolved (longtail.transfer.check_transfer_layers).
    transfer_layers: list[str] | None = setting(None, "with --init: the top-level layers to copy, comma-separated "
                                                "(default: all; from a seed-cnn jigsaw checkpoint some of conv1, "
                                                "conv2, conv3, fc1)")
    sync_bn: bool = setting(False, "under torchrun on GPUs: synchronise BatchNorm statistics across processes")

    # --- long-tail benchmark (Cao et al. 2019 / Kang et al. 2020 / MiSLAS): DRS and calibration ---
    rebalance_from_epoch: int = setting(0, "deferred re-sampling (DRS): apply --rebalance only from this epoch "
                                        "(0-based) on; plain shuffled epochs of the original samples before it "
                                        "(0: from the start)", low=0)
    ece_bins: int = setting(15, "equal-width confidence bins of the test set's expected calibration error "
                            "(15: MiSLAS, torchmetrics)", low=1, high=10_000)

    # --- decoupled classifier learning (Kang et al. 2020; longtail.decoupling, docs/imbalance.md) ---
    stage: str = setting("none", "a second stage on the finished classifier run --init RUN/checkpoint.pt names, "
                         "changing only its last layer (the rest frozen, BatchNorm statistics too): crt re-initialises "
                         "and retrains it, lws learns a scale per class, tau-norm divides each class's weights by "
                         "their norm to the power tau (chosen on validation); the data and network settings are the "
                         "source run's, and the recipe defaults to 'decouple'",
                         choices="longtail.decoupling:STAGES")

    @property
    def task(self) -> str:
        """Not a field: a classifier run classifies, with or without a stage."""
        return "classify" if self.stage == "none" else "classifier-stage"


@dataclass
class PretrainConfig(RunSettings):
    """Everything that decides a self-supervised pretraining run."""

    recipe: str = setting("seed", "named defaults: 'seed' (the seed report's setting) or 'improved' "
                          "(anti-shortcut measures; docs/jigsaw.md)", choices="longtail.config:PRETRAIN_RECIPES")
    task: str = setting("jigsaw", "pretext task", choices="longtail.tasks:PRETEXT_TASKS")
    grid: int = setting(2, "jigsaw grid: G cuts each image into GxG tiles (must divide the image size)", low=2, high=16)
    sinkhorn_iters: int | None = setting(None, "Sinkhorn row+column normalization rounds", low=1, high=1000)
    tau: float | None = setting(None, "Sinkhorn temperature (smaller: closer to a hard permutation)", low=0,
                                low_open=True, high=1000)
    gap: int | None = setting(None, "anti-shortcut: crop each tile N px smaller at a random offset and resize "
                              "back (0: off)", low=0, high=4096)
    tile_norm: bool | None = setting(None, "anti-shortcut: standardize each tile per channel")
    grayscale: float | None = setting(None, "anti-shortcut: probability of turning an image's tiles grey", low=0,
                                      high=1)
    # Jigsaw as a K-way classification over a fixed permutation set (Noroozi & Favaro 2016); docs/jigsaw.md.
    jigsaw_head: str = setting("sinkhorn", "jigsaw output: 'sinkhorn' (a tile->position matrix) or 'classify' "
                               "(which of a fixed set of permutations)", choices=("sinkhorn", "classify"))
    permutations: int = setting(100, "jigsaw_head 'classify': K, the size of the permutation set (chosen for "
                                "maximal Hamming distance)", low=1, high=362880)
    permutation_seed: int = setting(0, "jigsaw_head 'classify': seed of the permutation set's first member",
                                    low=0, high=2**31 - 1)


RECIPES: Registry[dict[str, Any]] = Registry("recipe", {
    # The seed report's setting (Homework 02).
    "seed": dict(epochs=20, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                 label_smoothing=0.0, augment=[], rebalance="none"),
    # Our best for the same CNN and epoch budget: see docs/run-store.md, "Recipes". Batch 128, not 256: on the
    # 2-core dev CPU a 128-image step's activations stay in cache and the step runs ~1.5x more
    # images/s, and 20 epochs reached the same test accuracy (0.8225 vs 0.8175, seed 0).
    "fast": dict(epochs=20, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle",
                 label_smoothing=0.1, augment=["crop", "flip"], rebalance="none"),
    # The long-tail literature's CIFAR setting (Cao et al. 2019's code, used by most later papers): SGD
    # with plain (not Nesterov) momentum 0.9, lr 0.1, weight decay 2e-4, batch 128, 200 epochs, warm-up over 5 epochs and x0.01
    # after 160, x0.0001 after 180 (schedule "lt"), crop + flip, no label smoothing. ldam-drw's default
    # drw_epoch (0.8 x epochs) is then epoch 160, theirs.
    "lt": dict(epochs=200, batch_size=128, optimizer="sgd-momentum", lr=0.1, weight_decay=2e-4, schedule="lt",
               label_smoothing=0.0, augment=["crop", "flip"], rebalance="none"),
    # Kang et al. 2020's classifier stage (their config/ImageNet_LT/cls_crt.yaml): 10 epochs of SGD
    # (momentum 0.9, weight decay 5e-4) with a cosine schedule to zero and class-aware sampling.
    # Their lr 0.2 is for batches of 512; at our 128, 0.05 (the linear scaling rule). Their LWS
    # config runs 5 epochs; one recipe serves both here (--epochs 5 for theirs).
    "decouple": dict(epochs=10, batch_size=128, optimizer="sgd", lr=0.05, weight_decay=5e-4, schedule="cosine",
                     label_smoothing=0.0, augment=["crop", "flip"], rebalance="class-aware"),
})

STAGE_RECIPE = "decouple"  # what an unset --recipe means with --stage
# What a stage keeps of its source run: the data, their splits, the imbalance draw (seeded by
# seed) and the network. Taken from its config.json where unset; a different value is refused.
STAGE_KEEPS = ("data", "root", "image_size", "resize", "test_fraction", "val_size", "split_seed", "limit_train",
               "limit_test", "imbalance", "seed", "model", "head", "padding")

PRETRAIN_RECIPES: Registry[dict[str, Any]] = Registry("pretraining recipe", {
    # The seed report's setting (Homework 03): Adam 1e-3, batch 64, 10 epochs, plain 2x2 puzzles.
    "seed": dict(epochs=10, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                 augment=[], sinkhorn_iters=20, tau=1.0, gap=0, tile_norm=False, grayscale=0.0),
    # Larger batches and a one-cycle schedule for speed; crop+flip and the three anti-shortcut
    # measures so the trunk learns content rather than tile borders, colour fringes and brightness.
    "improved": dict(epochs=10, batch_size=256, optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="onecycle",
                     augment=["crop", "flip"], sinkhorn_iters=20, tau=1.0, gap=2, tile_norm=True, grayscale=0.3),
})

RECIPES_OF: dict[type, Registry] = {TrainConfig: RECIPES, PretrainConfig: PRETRAIN_RECIPES}

# The head a loss assumes, where it is not linear: LDAM scales the logits by s=30, which assumes
# cosines in [-1, 1]; with a linear head's unbounded logits it diverges (docs/imbalance.md).
LOSS_HEADS: dict[str, str] = {"ldam-drw": "cosine"}


def default_head(loss: str) -> str:
    """What an unset --head means for ``loss``."""
    return LOSS_HEADS.get(loss, "linear")


def resolve_train_config(cli: dict | None = None, toml_path: str | Path | None = None,
                         base: dict | None = None) -> TrainConfig:
    """Merge recipe defaults < ``base`` (e.g. a study arm) < TOML file < CLI values (None = unset).
    With --stage the source run's data and network settings (STAGE_KEEPS) come first and the
    recipe defaults to STAGE_RECIPE. An unset head becomes the loss's (so config.json records the
    head trained); transfer layers are checked against the model's."""
    given = given_values(TrainConfig, cli=cli, toml_path=toml_path, base=base)
    default_recipe = None
    if given.get("stage", "none") != "none":
        from longtail.decoupling import inherited_settings  # imports torch: only for a stage

        given = {**inherited_settings(given.get("init"), given["stage"]), **given}
        default_recipe = STAGE_RECIPE
    cfg = build(TrainConfig, RECIPES, given, default_recipe)
    if cfg.head is None:
        cfg.head = default_head(cfg.loss)
    if cfg.transfer_layers is not None:
        from longtail.transfer import check_transfer_layers  # imports torch: only when there is something to check

        check_transfer_layers(cfg.model, cfg.transfer_layers)
    return cfg


def resolve_pretrain_config(cli: dict | None = None, toml_path: str | Path | None = None,
                            base: dict | None = None) -> PretrainConfig:
    """Merge recipe defaults < ``base`` (a study's [pretrain] table) < TOML file < CLI values."""
    return merge(PretrainConfig, PRETRAIN_RECIPES, cli=cli, toml_path=toml_path, base=base)


def comparable_keys_ignored() -> set[str]:
    """Keys of config.json that differ between runs of one arm or do not change what is trained:
    the run-neutral settings, the seed, and what the run adds about where it ran."""
    return run_neutral_keys(TrainConfig) | run_neutral_keys(PretrainConfig) | {"seed", *RECORD_KEYS}
