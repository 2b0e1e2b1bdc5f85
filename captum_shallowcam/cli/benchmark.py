"""``benchmark``: deletion/insertion per layer and method over a folder of photos.

Checks every argument first (:class:`~captum_shallowcam.cli._common.UsageError`),
then runs :func:`captum_shallowcam.experiments.sharding.run_benchmark`, in one
process or under ``torchrun``, and writes the report
(:func:`captum_shallowcam.cli.report.write_report`).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from captum_shallowcam.cli._common import (
    UsageError,
    add_layers_argument,
    add_methods_argument,
    add_model_argument,
    add_rules_argument,
    add_sharded_run_arguments,
    add_start_limit_arguments,
    check_layer_outputs,
    check_methods,
    check_step,
    load,
    parse_ranges,
    prepare_out,
    select_layers,
)
from captum_shallowcam.cli.report import write_report
from captum_shallowcam.experiments import sharding
from captum_shallowcam.experiments.images import LabelledImage, read_image_folder
from captum_shallowcam.experiments.ranks import close_ranks, init_ranks
from captum_shallowcam.metrics.protocols import PROTOCOLS, describe, protocol_kwargs
from captum_shallowcam.models import NORMALIZATIONS

HELP = "deletion/insertion per layer and method over a folder of photos"
DEFAULT_METHODS = (
    "layercam,shallowcam-v1,shallowcam-v2,shallowcam-v3,relevancecam,gradcam"
)


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "benchmark",
        help=HELP,
        description="Deletion/insertion of every method at every layer on a folder of "
        "labelled photos, compared to LayerCam image by image; writes the per-image "
        "scores (JSON), a table (Markdown) and a plot (PNG).",
    )
    _add_data_arguments(p)
    add_model_argument(p)
    add_layers_argument(p, "--layers")
    p.add_argument(
        "--normalization", default="own", choices=sorted(NORMALIZATIONS),
        help="input statistics: own (those the weights were trained with; "
        "EfficientNet-Lite: [-1, 1]) or imagenet (ImageNet mean and std, as many "
        "pipelines use for every model) (default: own)",
    )  # fmt: skip
    add_methods_argument(p, "--methods", DEFAULT_METHODS)
    add_rules_argument(p)
    _add_metric_arguments(p)
    _add_selection_arguments(p)
    _add_run_arguments(p)
    p.add_argument(
        "--out", default="results.json",
        help="per-image results (JSON); the table and plot go beside it as .md and .png "
        "(default: results.json)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images", required=True,
        help="folder with the photos and a labels.csv (columns file, class_index), or a "
        "CUB-200-2011 root (required)",
    )  # fmt: skip
    p.add_argument(
        "--labels", default=None, help="labels CSV (default: IMAGES/labels.csv)"
    )
    p.add_argument(
        "--devkit",
        default=None,
        help="ILSVRC2012 val as a flat folder: the unpacked devkit (data/meta.mat, "
        "data/ILSVRC2012_validation_ground_truth.txt) or torchvision's meta.bin (default: none)",
    )


def _add_metric_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        default="captum-shallowcam",
        choices=sorted(PROTOCOLS),
        help="metric preset (step and substrates; recorded in the result): "
        "captum-shallowcam (step 224, torchvision blur 11/5), rise (RISE's own code), "
        "groupcam (step 1792, blur 51/50) (default: captum-shallowcam)",
    )
    p.add_argument(
        "--step", type=int, default=None,
        help="deletion/insertion step in pixels (default: the protocol's; 224, the "
        "paper's, is one row)",
    )  # fmt: skip


def _add_selection_arguments(p: argparse.ArgumentParser) -> None:
    add_start_limit_arguments(p)
    p.add_argument(
        "--classes", default=None,
        help="class index ranges to keep, e.g. 7-24,80-100 (default: all)",
    )  # fmt: skip


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="images explained at once (default: 4)",
    )
    p.add_argument(
        "--max-examples-per-batch", type=int, default=None,
        help="perturbed images per forward pass of the metric (default: the metric's, 32)",
    )  # fmt: skip
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="run the model in channels-last memory format (about 1.5x faster on CPU for "
        "EfficientNet-Lite0; scores equal up to float rounding; default: off)",
    )
    p.add_argument(
        "--amp",
        default=None,
        choices=["bf16"],
        help="run the metric's forward passes under torch.autocast (explanations stay "
        "float32; default: off)",
    )
    add_sharded_run_arguments(p)


def run(args: argparse.Namespace) -> None:
    check_step(args.step)
    _check_counts(args)
    _check_device(args.device)
    prepare_out(Path(args.out), "results")
    try:
        items = read_image_folder(args.images, args.labels, devkit=args.devkit)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--images: {error}") from None
    loaded = load(args.model, args.normalization)
    if args.channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    layers = select_layers(loaded, args.layers)
    items = _select_items(args, items)
    _check_items(loaded, items)
    check_layer_outputs(loaded, layers, loaded.preprocess(items[0].load()))
    methods = check_methods(loaded, layers, args.methods, args.rules)
    metric_kwargs = protocol_kwargs(args.protocol, step=args.step)
    settings = _settings(args, items, metric_kwargs)
    metric_kwargs["max_examples_per_batch"] = args.max_examples_per_batch
    if args.amp == "bf16":
        metric_kwargs["autocast_dtype"] = torch.bfloat16
    info = init_ranks(timeout_s=args.dist_timeout, device=args.device)
    finished = False
    try:
        result = sharding.run_benchmark(
            loaded.model, items, loaded.preprocess, layers, methods, Path(args.out),
            metric_kwargs, settings, batch_size=args.batch_size, resume=args.resume,
            info=info, rules=args.rules,
        )  # fmt: skip
        finished = True
    except (FileExistsError, ValueError) as error:  # earlier shards, other settings
        raise UsageError(str(error)) from None
    finally:
        close_ranks(info, finished)
    if result is not None:
        write_report(result, Path(args.out))


def _select_items(
    args: argparse.Namespace, items: list[LabelledImage]
) -> list[LabelledImage]:
    """The photos of ``--classes``, ``--start`` and ``--limit``; none is refused."""
    if args.classes:
        keep = parse_ranges(args.classes)
        items = [item for item in items if item.target in keep]
    items = items[args.start :]
    if args.limit:
        items = items[: args.limit]
    if not items:
        raise UsageError(
            "no images left to evaluate after --classes, --start and --limit; loosen them"
        )
    return items


def _settings(args: argparse.Namespace, items, metric_kwargs) -> dict[str, object]:
    """What the result records of this run (and a resumed run must match)."""
    settings = {
        "model": args.model,
        "images": str(args.images),
        "labels": args.labels and str(Path(args.labels).resolve()),
        "devkit": args.devkit and str(Path(args.devkit).resolve()),
        "n_images": len(items),
        "start": args.start,
        "limit": args.limit,
        "classes": args.classes,
        "protocol": args.protocol,
        "metric": describe(args.protocol, metric_kwargs),
        "channels_last": args.channels_last,
        "amp": args.amp,
    }
    if args.normalization != "own":  # recorded only when not the model's own
        settings["normalization"] = args.normalization
    if args.rules is not None:  # recorded only when not the methods' own
        settings["rules"] = args.rules
    return settings


def _check_counts(args: argparse.Namespace) -> None:
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if args.start < 0:
        raise UsageError(f"--start must be 0 or more, got {args.start}")
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit must be positive, got {args.limit}")
    if args.max_examples_per_batch is not None and args.max_examples_per_batch <= 0:
        raise UsageError(
            f"--max-examples-per-batch must be positive, got {args.max_examples_per_batch}"
        )
    if args.classes:
        parse_ranges(args.classes)


def _check_device(text: str | None) -> None:
    if text is None:
        return
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a device; give cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(
                f"--device {text}: no CUDA GPU is available here; use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device {text}: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )


def _check_items(loaded, items: Sequence[LabelledImage]) -> None:
    """Every photo is there and every label is a class of the model."""
    missing = [str(item.path) for item in items if not item.path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UsageError(
            f"photo {missing[0]}{more} not found; fix the labels file or the folder"
        )
    for item in items:
        try:
            with Image.open(item.path) as image:
                image.load()  # decodes it all: a truncated file fails here
        except Exception as error:  # PIL raises several types
            raise UsageError(
                f"cannot read photo {item.path} ({type(error).__name__}: {error}); "
                "replace it or leave it out of the labels file"
            ) from None
    n_classes = len(loaded.categories)
    bad = [
        item
        for item in items
        if item.target is not None and not 0 <= item.target < n_classes
    ]
    if bad:
        raise UsageError(
            f"{bad[0].path.name}: class {bad[0].target} is not a class of {loaded.name} "
            f"(0 to {n_classes - 1}); fix the labels file"
        )
