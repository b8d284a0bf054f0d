"""The ``longtail`` command: data, train, pretrain, study, report.

Every problem with the user's input ends as one line, ``longtail: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing

from longtail.config import TrainConfig
from longtail.errors import LongtailError

FLAG_HELP = {
    "data": "dataset: 'cifar10' (downloaded, verified) or an image folder / .zip with train/<class>/ and test/<class>/",
    "out": "run directory to create (config.json, metrics.jsonl, summary.json, checkpoint.pt)",
    "recipe": "named defaults: 'fast' (SGD one-cycle, crop+flip, bf16) or 'seed' (the seed report's Adam setting)",
    "augment": "batch augmentations, comma-separated: crop, flip, brightness, contrast (empty: none)",
    "precision": "auto (bf16 where the hardware multiplies bf16 natively), bf16 or fp32",
    "device": "auto (CUDA when present), cpu or cuda",
    "val_size": "validation images held out from train (default 10%%: 5,000 for CIFAR-10)",
    "limit_train": "use only N training images (stratified), for quick runs",
    "limit_test": "evaluate on N test images (stratified), for quick runs",
    "imbalance": "remove training samples first: step:RATIO[:CLASSES], exponential:RATIO, counts:N0,N1,...",
    "rebalance": "none, copy, aug, aug-only, copy-aug, class-balanced or sqrt (docs/imbalance.md)",
    "loss": "ce, weighted, cb, focal, ldam-drw, logit-adjust, balanced-softmax or logit-adjust-posthoc "
            "(docs/imbalance.md)",
    "loss_params": "extra loss parameter KEY=VALUE (repeatable), e.g. gamma=2",
    "init": "initialise from a jigsaw pretraining checkpoint (DIR/checkpoint.pt)",
    "transfer": "with --init: finetune all layers, or freeze the transferred ones",
    "transfer_layers": "with --init: the layers to copy, comma-separated, from conv1, conv2, conv3, fc1 (default: all)",
    "transfer_lr_scale": "with --init and finetune: the transferred layers' learning rate as a fraction of "
                         "the others' (1: the same; smaller keeps more of the pretrained features)",
    "threads": "CPU threads for this process (under torchrun: default, an equal share of the cores)",
    "sync_bn": "under torchrun on GPUs: synchronise BatchNorm statistics across processes",
    "checkpoint_every": "also checkpoint every N steps (epochs always end with one)",
    "quiet": "no progress bars",
    "resume": "continue an interrupted run in --out from its last checkpoint",
    "seed": "seed for initialisation, data order, augmentation and the imbalance draw",
    "split_seed": "seed of the validation split (kept fixed across run seeds)",
    "padding": "SeedCNN conv padding: same or valid",
    "head": "last layer: linear (the seed's) or cosine (normalised; what LDAM's s=30 assumes)",
    "task": "pretext task: jigsaw",
    "grid": "jigsaw grid: G cuts each image into GxG tiles (must divide the image size; 2 as in the seed)",
    "sinkhorn_iters": "Sinkhorn row+column normalization rounds",
    "tau": "Sinkhorn temperature (smaller: closer to a hard permutation)",
    "gap": "anti-shortcut: crop each tile N px smaller at a random offset and resize back (0: off)",
    "tile_norm": "anti-shortcut: standardize each tile per channel",
    "grayscale": "anti-shortcut: probability of turning an image's tiles grey",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not usage + message
        self.exit(2, f"longtail: error: {message} (see {self.prog} --help)\n")


def _parse_kv(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _seed_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: set[str] = frozenset()) -> None:
    """One ``--flag`` per dataclass field; unset flags stay None so TOML and recipes fill them."""
    for name, annotation in typing.get_type_hints(cls).items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
        base = next((a for a in args if a is not type(None)), annotation)
        help_text = FLAG_HELP.get(name)
        if base is bool:
            parser.add_argument(flag, action="store_const", const=True, default=None, help=help_text)
        elif base is dict or typing.get_origin(base) is dict:
            parser.add_argument("--" + name.replace("_", "-").removesuffix("s"), dest=name, action="append",
                                type=_parse_kv, default=None, metavar="KEY=VALUE", help=help_text)
        elif typing.get_origin(base) is list:
            parser.add_argument(flag, type=_list, default=None, metavar="A,B", help=help_text)
        else:
            parser.add_argument(flag, type=base, default=None, metavar=name.upper(), help=help_text)


def _cli_values(ns: argparse.Namespace, cls: type) -> dict:
    values = {k: v for k, v in vars(ns).items() if k in typing.get_type_hints(cls) and v is not None}
    if isinstance(values.get("loss_params"), list):
        values["loss_params"] = dict(values["loss_params"])
    return values


def build_parser() -> argparse.ArgumentParser:
    from longtail import __version__

    p = _Parser(prog="longtail", description="Class-imbalanced image classification and jigsaw pretraining.")
    p.add_argument("--version", action="version", version=f"longtail {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser, metavar="ACTION")
    info = data_sub.add_parser("info", help="classes, counts per split, image shape")
    info.add_argument("--data", default="cifar10", help=FLAG_HELP["data"])
    info.add_argument("--imbalance", default=None, help=FLAG_HELP["imbalance"])
    info.add_argument("--val-size", type=int, default=None, help=FLAG_HELP["val_size"])
    info.add_argument("--split-seed", type=int, default=0)
    info.add_argument("--seed", type=int, default=0)

    train = sub.add_parser("train", help="train and evaluate the seed CNN")
    train.add_argument("--config", metavar="FILE.toml", help="TOML file with any of these options (flags win)")
    add_config_flags(train, TrainConfig)

    from longtail.pretrain import PRETRAIN_RECIPES, PretrainConfig

    pretrain = sub.add_parser("pretrain", help="self-supervised jigsaw pretraining of the seed CNN's trunk")
    pretrain.add_argument("--config", metavar="FILE.toml", help="TOML file with any of these options (flags win)")
    pretrain.add_argument("--recipe", default=None, metavar="RECIPE",
                          help=f"named defaults: {' or '.join(PRETRAIN_RECIPES)} (see docs/jigsaw.md)")
    add_config_flags(pretrain, PretrainConfig, skip={"recipe"})

    study = sub.add_parser("study", help="run a grid of arms x seeds from a TOML study file, then aggregate")
    study.add_argument("file", metavar="FILE.toml", help="study file (see configs/ and docs/imbalance.md)")
    study.add_argument("--data", default=None, help=FLAG_HELP["data"] + " (overrides the study file's)")
    study.add_argument("--out", default=None, metavar="DIR", help="study folder (default runs/<study name>)")
    study.add_argument("--seeds", type=_seed_list, default=None, metavar="0,1,2", help="seeds, overriding the file's")
    study.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
    study.add_argument("--shard", default=None, metavar="K/N", help="run only the K-th of N slices of the grid")
    study.add_argument("--workers", type=int, default=1, metavar="M",
                       help="run up to M grid runs at once on this machine, each a process with cores/M threads")
    study.add_argument("--collect", action="store_true",
                       help="run nothing: aggregate the finished runs and list the missing ones")

    report = sub.add_parser("report", help="write report.html and SVG/PDF figures for a study or run folder")
    report.add_argument("dir", metavar="DIR", help="a study folder (longtail study --out) or one run folder")
    return p


def cmd_data_info(ns: argparse.Namespace) -> int:
    import torch

    from longtail.data.imbalance import profile_counts
    from longtail.data.sources import load_dataset
    from longtail.data.split import train_val_split
    from longtail.runner import default_val_size

    ds = load_dataset(ns.data)
    c, h, w = ds.image_shape
    train_idx, val_idx = train_val_split(ds.train_labels, ns.val_size or default_val_size(len(ds.train_labels)),
                                         ds.num_classes, ns.split_seed)
    rows = {"train": ds.train_labels[train_idx], "val": ds.train_labels[val_idx], "test": ds.test_labels}
    counts = {k: torch.bincount(v, minlength=ds.num_classes).tolist() for k, v in rows.items()}
    kept = profile_counts(ns.imbalance, counts["train"]) if ns.imbalance else None
    print(f"dataset: {ds.name}  ({ds.fingerprint[:16]})")
    print(f"image shape: {c}x{h}x{w} (channels x height x width), {ds.num_classes} classes")
    header = f"{'class':<16}{'train':>8}{'val':>8}{'test':>8}" + (f"{'kept':>8}" if kept else "")
    print(header)
    for j, name in enumerate(ds.classes):
        line = f"{j} {name:<14}{counts['train'][j]:>8}{counts['val'][j]:>8}{counts['test'][j]:>8}"
        print(line + (f"{kept[j]:>8}" if kept else ""))
    total = f"{'total':<16}{sum(counts['train']):>8}{sum(counts['val']):>8}{sum(counts['test']):>8}"
    print(total + (f"{sum(kept):>8}" if kept else ""))
    if kept:
        print(f"imbalance {ns.imbalance}: max/min kept = {max(kept) / min(kept):.1f}")
    return 0


def _main_process() -> bool:
    """Under torchrun, rank 0 speaks for all."""
    return os.environ.get("RANK", "0") == "0"


def cmd_train(ns: argparse.Namespace) -> int:
    from longtail.config import resolve_train_config
    from longtail.runner import run_training

    cfg = resolve_train_config(_cli_values(ns, TrainConfig), ns.config)
    summary = run_training(cfg)
    if not _main_process():
        return 0
    print(f"{cfg.out}: test acc {summary['test_acc']:.4f}, balanced {summary['test_balanced_acc']:.4f}, "
          f"macro-F1 {summary['test_macro_f1']:.4f} (best epoch {summary['best_epoch']} on validation; "
          f"best test acc over epochs {summary['best_test_acc_over_epochs']:.4f})")
    return 0


def cmd_pretrain(ns: argparse.Namespace) -> int:
    from longtail.pretrain import PretrainConfig, resolve_pretrain_config, run_pretraining

    cfg = resolve_pretrain_config(_cli_values(ns, PretrainConfig), ns.config)
    s = run_pretraining(cfg)
    if not _main_process():
        return 0
    print(f"{cfg.out}: test puzzles solved {s['test_puzzle_acc_hungarian']:.4f} (Hungarian) / "
          f"{s['test_puzzle_acc_argmax']:.4f} (argmax), tiles placed {s['test_position_acc_hungarian']:.4f}, "
          f"confidence {s['test_confidence']:.4f} (best epoch {s['best_epoch']} on validation)")
    return 0


def cmd_study(ns: argparse.Namespace) -> int:
    from longtail.study import collect, grid, load_study, parse_shard, run_study, run_with_workers

    study = load_study(ns.file, data=ns.data, out=ns.out, seeds=ns.seeds, quiet=ns.quiet)
    if ns.workers < 1 or (ns.workers > 1 and (ns.shard or ns.collect)):
        raise LongtailError("--workers takes a positive count and cannot be combined with --shard or --collect")
    if ns.collect:
        _, missing = collect(study, grid(study))
    elif ns.workers > 1:
        _, missing = run_with_workers(study, ns.workers)
    else:
        _, missing = run_study(study, shard_spec=parse_shard(ns.shard) if ns.shard else None)
    for cell in missing:
        print(f"missing: {cell.run_dir}", file=sys.stderr)
    if missing and ns.collect:
        return 1  # a script waiting for the other shards can test for this
    if not missing:
        print(f"{study.out}: results in aggregate.json and results.csv")
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from longtail.report import write_report

    print(write_report(ns.dir, note=lambda line: print(f"longtail: note: {line}", file=sys.stderr)))
    return 0


COMMANDS = {"data": cmd_data_info, "train": cmd_train, "pretrain": cmd_pretrain, "study": cmd_study,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except LongtailError as e:
        from longtail.train import TrainingInterrupted

        print(f"longtail: {'stopped' if isinstance(e, TrainingInterrupted) else 'error'}: {e}", file=sys.stderr)
        return 130 if isinstance(e, TrainingInterrupted) else 2
    except KeyboardInterrupt:
        print("longtail: interrupted", file=sys.stderr)
        return 130
    finally:
        if "longtail.distributed" in sys.modules:
            sys.modules["longtail.distributed"].teardown()


if __name__ == "__main__":
    sys.exit(main())
