"""The ``longtail`` command: data, train, pretrain, study, report, predict, evaluate, export.

Every problem with the user's input ends as one line, ``longtail: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import types
import typing

from longtail.config import PRECISIONS, PretrainConfig, TrainConfig, resolve_train_config
from longtail.errors import LongtailError, TrainingInterrupted

EXAMPLES = {
    "data": """examples:
  longtail data info --data cifar10 --imbalance exponential:100
  longtail data info --data path/to/images.zip
  longtail data info --data photos/ --image-size 64 --test-fraction 0.2   # <class>/ folders, mixed sizes
  longtail data info --data list:ImageNet_LT_train.txt,ImageNet_LT_test.txt --root imagenet/ --image-size 64""",
    "train": """examples:
  longtail train --data cifar10 --out runs/fast
  longtail train --data cifar10 --out runs/lt --imbalance exponential:100 --loss ldam-drw --head cosine
  longtail train --config my-run.toml --out runs/mine --epochs 5      # flags win over the file
  longtail train --data cifar10 --out runs/lt --resume                 # continue after a crash or Ctrl-C
  longtail train --stage crt --init runs/lt/checkpoint.pt --out runs/lt-crt   # retrain the last layer, class-balanced
  longtail train --stage tau-norm --init runs/lt/checkpoint.pt --out runs/lt-tau  # rescale it, tau from validation""",
    "pretrain": """examples:
  longtail pretrain --data cifar10 --out runs/jigsaw
  longtail pretrain --data cifar10 --out runs/jigsaw-improved --recipe improved
  longtail train --data cifar10 --out runs/from-jigsaw --init runs/jigsaw/checkpoint.pt""",
    "study": """examples:
  longtail study configs/long-tail.toml --data cifar10 --workers 2
  longtail study configs/seed-imbalance.toml --data cifar10 --seeds 0 --out runs/quick
  longtail study configs/long-tail.toml --data cifar10 --collect      # aggregate what has finished
  longtail study configs/cifar10-lt.toml --data cifar10 --arms ce,ldam-drw   # only some arms, for now""",
    "report": """examples:
  longtail report runs/long-tail
  longtail report runs/long-tail --metric test_acc                    # headline: the best arm on test accuracy
  longtail report runs/fast                                           # one run folder""",
    "predict": """examples:
  longtail predict runs/fast photo.jpg                                # CSV on stdout: path,class_1,prob_1
  longtail predict runs/fast photos/ --top-k 3 --out preds.csv        # a folder, walked for images
  longtail predict runs/lt-posthoc test-images/                       # with the run's logit adjustment""",
    "evaluate": """examples:
  longtail evaluate runs/fast --data path/to/other-set.zip            # -> runs/fast/evaluation-other-set.json
  longtail evaluate runs/lt --data cifar10                            # the run's classes, another test split""",
    "export": """examples:
  longtail export runs/fast --format torchscript                      # -> runs/fast/model.pt
  longtail export runs/fast --format onnx --out fast.onnx             # needs: pip install 'longtail[onnx]'
  longtail export runs/fast --format torchscript --out fast.pt        # then: torch.jit.load("fast.pt")""",
}


class _SettingsHelp(argparse.RawDescriptionHelpFormatter):
    """Writes a settings flag's help from its Setting when help is printed (not when the parser
    is built), so the choices come from the registries without loading them for every command."""

    def _get_help_string(self, action: argparse.Action) -> str:
        source = getattr(action, "setting_of", None)
        if source is None:
            return super()._get_help_string(action)
        from longtail.config import RECIPES_OF
        from longtail.settings import help_text

        cls, name = source
        return help_text(cls, name, RECIPES_OF.get(cls))


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


def _name_list(text: str) -> list[str]:
    names = _list(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated arm names, got {text!r}")
    return names


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_config_flags(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """One ``--flag`` per setting of ``cls`` (or the ``only`` ones); unset flags stay None so TOML
    and recipes fill them. Checking happens in one place for every source (settings.check_mapping)."""
    from longtail.settings import settings_of

    hints = typing.get_type_hints(cls)
    for name, spec in settings_of(cls).items():
        if only is not None and name not in only:
            continue
        annotation = hints[name]
        flag = "--" + name.replace("_", "-")
        args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
        base = next((a for a in args if a is not type(None)), annotation)
        metavar = spec.metavar or name.upper()
        if base is bool:
            action = parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help="-")
        elif base is dict or typing.get_origin(base) is dict:
            action = parser.add_argument(flag.removesuffix("s"), dest=name, action="append", type=_parse_kv,
                                         default=None, metavar="KEY=VALUE", help="-")
        elif typing.get_origin(base) is list:
            action = parser.add_argument(flag, type=_list, default=None, metavar="A,B", help="-")
        else:
            action = parser.add_argument(flag, type=_number(base), default=None, metavar=metavar, help="-")
        action.setting_of = (cls, name)


def _number(base: type):
    """argparse type for int/float/str settings, with a message that names the expected kind."""
    if base not in (int, float):
        return base

    def convert(text: str):
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if base is int else 'a number'}, "
                                             f"got {text!r}") from None

    convert.__name__ = base.__name__
    return convert


def _cli_values(ns: argparse.Namespace, cls: type) -> dict:
    values = {k: v for k, v in vars(ns).items() if k in typing.get_type_hints(cls) and v is not None}
    if isinstance(values.get("loss_params"), list):
        values["loss_params"] = dict(values["loss_params"])
    return values


DATA_INFO_FLAGS = ("data", "imbalance", "val_size", "split_seed", "seed", "limit_train", "image_size", "resize",
                   "test_fraction", "root")


def build_parser() -> argparse.ArgumentParser:
    from longtail import __version__

    p = _Parser(prog="longtail", description="Class-imbalanced image classification and self-supervised "
                "pretraining, fast on a CPU. Each command has its own --help.")
    p.add_argument("--version", action="version", version=f"longtail {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """A subcommand: its one-line help, a longer description if given, and its examples."""
        text = textwrap.fill(f"{help}: {description}", 100) if description else help
        return sub.add_parser(name, help=help, description=text, epilog=EXAMPLES.get(name),
                              formatter_class=_SettingsHelp)

    data = command("data", "inspect a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser, metavar="ACTION")
    info = data_sub.add_parser("info", help="classes, counts per split (and after an imbalance profile), image shape",
                               epilog=EXAMPLES["data"], formatter_class=_SettingsHelp)
    add_config_flags(info, TrainConfig, only=DATA_INFO_FLAGS)

    train = command("train", "train and evaluate a classifier (the seed CNN, ResNet-32 or a torchvision model)")
    train.add_argument("--config", metavar="FILE.toml", help="TOML file with any of these options (flags win)")
    add_config_flags(train, TrainConfig)

    pretrain = command("pretrain", "self-supervised pretraining of the classifier's trunk (jigsaw puzzles or rotations)")
    pretrain.add_argument("--config", metavar="FILE.toml", help="TOML file with any of these options (flags win)")
    add_config_flags(pretrain, PretrainConfig)

    study = command("study", "run a grid of arms x seeds from a TOML study file, then aggregate")
    study.add_argument("file", metavar="FILE.toml", help="study file (see configs/ and docs/imbalance.md)")
    study.add_argument("--data", default=None, metavar="PATH", help="the dataset of every run, overriding the study "
                       "file's: 'cifar10' or an image folder / .zip")
    study.add_argument("--out", default=None, metavar="DIR", help="study folder (default: runs/<study name>)")
    study.add_argument("--seeds", type=_seed_list, default=None, metavar="0,1,2", help="seeds, overriding the file's")
    study.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=False,
                       help="no progress bars or per-run lines (default: off)")
    study.add_argument("--shard", default=None, metavar="K/N", help="run only the K-th of N slices of the grid")
    study.add_argument("--workers", type=_number(int), default=1, metavar="M",
                       help="run up to M grid runs at once on this machine, each a process with cores/M threads "
                       "(default: 1)")
    study.add_argument("--arms", type=_name_list, default=None, metavar="A,B",
                       help="run only these arms (and the runs they start from); the aggregate then covers every "
                       "finished run of the grid")
    study.add_argument("--collect", action="store_true",
                       help="run nothing: aggregate the finished runs and list the missing ones")

    report = command("report", "write report.html and SVG/PDF figures for a study or run folder")
    report.add_argument("dir", metavar="DIR", help="a study folder (longtail study --out) or one run folder")
    # literal choices: importing the report's modules (matplotlib) for every command's parser is slow
    report.add_argument("--metric", default="test_balanced_acc", choices=("test_balanced_acc", "test_acc", "test_macro_f1"),
                        help="what the headline of a study ranks its arms on (default: test_balanced_acc)")

    run_help = "a finished classifier run folder (longtail train --out)"

    predict = command("predict", "classify images with a finished classifier run",
                          "one CSV row per image (path, then the top-k classes and their probabilities), with the "
                          "run's own preprocessing and, for logit-adjust-posthoc, the adjustment its test figures "
                          "were made with")
    predict.add_argument("run", metavar="RUN", help=run_help)
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                         help="image files, or folders searched (recursively) for image files")
    predict.add_argument("--top-k", type=_number(int), default=1, metavar="K",
                         help="the K most probable classes per image (default: 1; at most the class count)")
    predict.add_argument("--out", default=None, metavar="FILE.csv",
                         help="write the CSV here instead of stdout (replaces only a predictions file longtail wrote)")
    precision_help = ("bf16 or fp32 (default: the precision the run was evaluated in, config.json's precision_used); "
                      "fp32 runs on any CPU, and its figures can differ from bf16's by rounding")
    predict.add_argument("--precision", default=None, choices=PRECISIONS, help=precision_help)

    evaluate = command("evaluate", "score a finished classifier run on another labelled dataset",
                           "every test figure of summary.json (accuracy, balanced accuracy, macro-F1, per class, "
                           "confusion) on the TEST split of --data, printed in one line and written to "
                           "RUN/evaluation-<name of --data>.json")
    evaluate.add_argument("run", metavar="RUN", help=run_help)
    evaluate.add_argument("--data", required=True, metavar="PATH",
                          help="'cifar10' or an image folder / .zip with train/<class>/ and test/<class>/ and the "
                          "run's class names; only test/ is scored")
    evaluate.add_argument("--precision", default=None, choices=PRECISIONS, help=precision_help)

    export = command("export", "write a finished classifier run's model as one TorchScript or ONNX file",
                         "preprocessing inside; input uint8 images (N, C, H, W) in [0, 255] at the run's image size "
                         "(TorchScript also float in [0, 1], and other sizes when the run resizes), output logits "
                         "(after the run's post-hoc adjustment, if any); see docs/inference.md")
    export.add_argument("run", metavar="RUN", help=run_help)
    export.add_argument("--format", required=True, metavar="FORMAT",
                        help="torchscript, or onnx (needs the extra: pip install 'longtail[onnx]')")
    export.add_argument("--out", default=None, metavar="FILE",
                        help="output file (default: RUN/model.pt or RUN/model.onnx; replaces only a model longtail "
                        "exported)")
    return p


def cmd_data_info(ns: argparse.Namespace) -> int:
    import torch

    from longtail.data.imbalance import profile_counts
    from longtail.data.prepare import available_counts, training_indices
    from longtail.data.sources import dataset_for

    cfg = resolve_train_config(_cli_values(ns, TrainConfig))
    ds = dataset_for(cfg)
    c, h, w = ds.image_shape
    train_idx, val_idx = training_indices(cfg, ds)
    rows = {"train": ds.train_labels[train_idx], "val": ds.train_labels[val_idx], "test": ds.test_labels}
    counts = {k: torch.bincount(v, minlength=ds.num_classes).tolist() for k, v in rows.items()}
    kept = profile_counts(cfg.imbalance, available_counts(cfg, ds)) if cfg.imbalance else None
    print(f"dataset: {ds.name}  ({ds.fingerprint[:16]})")
    print(f"image shape: {c}x{h}x{w} (channels x height x width), {ds.num_classes} classes")
    if ds.layout:
        held_out = (f" ({ds.options.test_fraction:g} of every class, split seed {ds.options.split_seed})"
                    if ds.options.test_fraction is not None else "")
        print(f"layout: {ds.layout}{held_out}")
    if ds.options.describe():
        print(ds.options.describe())
    header = f"{'class':<16}{'train':>8}{'val':>8}{'test':>8}" + (f"{'kept':>8}" if kept else "")
    print(header)
    for j, name in enumerate(ds.classes):
        line = f"{j} {name:<14}{counts['train'][j]:>8}{counts['val'][j]:>8}{counts['test'][j]:>8}"
        print(line + (f"{kept[j]:>8}" if kept else ""))
    total = f"{'total':<16}{sum(counts['train']):>8}{sum(counts['val']):>8}{sum(counts['test']):>8}"
    print(total + (f"{sum(kept):>8}" if kept else ""))
    if kept:
        print(f"imbalance {cfg.imbalance}: max/min kept = {max(kept) / min(kept):.1f}")
    skipped = getattr(ds, "skipped", None) or {}
    if skipped:
        print(f"skipped {sum(skipped.values())} files: " + ", ".join(f"{n} {why}" for why, n in skipped.items()))
    return 0


def _main_process() -> bool:
    """Under torchrun, rank 0 speaks for all."""
    return os.environ.get("RANK", "0") == "0"


def cmd_run(ns: argparse.Namespace) -> int:
    """``train`` and ``pretrain``: resolve the settings, run the lifecycle, print its headline."""
    from longtail.config import resolve_pretrain_config
    from longtail.run import run
    from longtail.tasks import TASKS

    cls, resolve = (TrainConfig, resolve_train_config) if ns.command == "train" else \
        (PretrainConfig, resolve_pretrain_config)
    cfg = resolve(_cli_values(ns, cls), ns.config)
    summary = run(cfg)
    if _main_process():
        task = TASKS[cfg.task]
        print(f"{cfg.out}: {task.headline(summary)}")
        for line in task.result_table(summary):
            print(line)
    return 0


def cmd_study(ns: argparse.Namespace) -> int:
    from longtail.study import collect, grid, load_study, parse_shard, run_study, run_with_workers

    study = load_study(ns.file, data=ns.data, out=ns.out, seeds=ns.seeds, quiet=ns.quiet)
    if ns.workers < 1 or (ns.workers > 1 and (ns.shard or ns.collect)):
        raise LongtailError("--workers takes a positive count and cannot be combined with --shard or --collect")
    if ns.arms and ns.collect:
        raise LongtailError("--arms chooses what to run and --collect runs nothing: give one of them")
    if ns.collect:
        _, missing = collect(study, grid(study))
    elif ns.workers > 1:
        _, missing = run_with_workers(study, ns.workers, arms=ns.arms)
    else:
        _, missing = run_study(study, shard_spec=parse_shard(ns.shard) if ns.shard else None, arms=ns.arms)
    if ns.arms and missing:
        # the chosen arms are done: aggregate them with whatever else has finished
        _, missing = collect(study, grid(study))
        print(f"{study.out}: the finished runs in aggregate.json and results.csv; {len(missing)} run(s) of other "
              "arms not run (--collect lists them)")
        return 0
    for cell in missing:
        print(f"missing: {cell.run_dir}", file=sys.stderr)
    if missing and ns.collect:
        return 1  # a script waiting for the other shards can test for this
    if not missing:
        print(f"{study.out}: results in aggregate.json and results.csv")
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from longtail.report import write_report

    print(write_report(ns.dir, note=lambda line: print(f"longtail: note: {line}", file=sys.stderr), metric=ns.metric))
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    from longtail.inference import image_files, load_model, predict, predictions_csv, write_predictions

    if ns.top_k < 1:
        raise LongtailError(f"--top-k must be at least 1, got {ns.top_k}")
    model = load_model(ns.run, precision=ns.precision)
    k = min(ns.top_k, len(model.classes))
    # All rows are made before anything is written, so an unreadable image leaves no partial CSV.
    files = image_files(ns.inputs)
    text = predictions_csv(predict(model, files, k), k)
    if ns.out is None:
        sys.stdout.write(text)
    else:
        write_predictions(ns.out, text)
        print(f"{ns.out}: {len(files)} images")
    return 0


def cmd_evaluate(ns: argparse.Namespace) -> int:
    from longtail.inference import evaluate

    path, r = evaluate(ns.run, ns.data, precision=ns.precision)
    print(f"{path}: test acc {r['test_acc']:.4f}, balanced {r['test_balanced_acc']:.4f}, macro-F1 "
          f"{r['test_macro_f1']:.4f} on {r['n_test']} test images of {ns.data}")
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from longtail.inference import export

    print(export(ns.run, ns.format, ns.out))
    return 0


COMMANDS = {"data": cmd_data_info, "train": cmd_run, "pretrain": cmd_run, "study": cmd_study,
            "report": cmd_report, "predict": cmd_predict, "evaluate": cmd_evaluate, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except LongtailError as e:
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
