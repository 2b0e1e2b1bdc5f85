"""``sanity``: model-randomization curves and class sensitivity over a folder of photos.

Checks every argument first (:class:`~captum_shallowcam.cli._common.UsageError`),
then runs :func:`captum_shallowcam.experiments.sanity.run_sanity`, in one process
or under ``torchrun`` (the benchmark's shards and ``--resume``), and writes the
JSON and the plot of the cascading curves
(:func:`~captum_shallowcam.experiments.sanity.plot_cascading`).
"""

import argparse
from pathlib import Path

from captum_shallowcam.cli._common import (
    UsageError,
    add_layers_argument,
    add_methods_argument,
    add_model_argument,
    add_sharded_run_arguments,
    add_start_limit_arguments,
    check_layer_outputs,
    check_methods,
    load,
    prepare_out,
    select_layers,
)
from captum_shallowcam.cli.benchmark import (
    _add_data_arguments,
    _check_device,
    _check_items,
)
from captum_shallowcam.cli.report import write_sanity_report
from captum_shallowcam.experiments import sanity
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.experiments.ranks import close_ranks, init_ranks
from captum_shallowcam.models import NORMALIZATIONS

HELP = "sanity checks: model randomization and class sensitivity over photos"
DEFAULT_METHODS = "layercam,layercam+sign-aware,shallowcam,relevancecam,gradcam"
DEFAULT_LAYERS = "stage1,stage2,stage4,stage7"


def add_parser(commands) -> argparse.ArgumentParser:  # noqa: ANN001
    p = commands.add_parser(
        "sanity",
        help=HELP,
        description="The sanity checks of Adebayo et al. (NeurIPS 2018) for every "
        "method at every layer on a folder of photos, explaining the model's "
        "predicted class: the rank correlation and SSIM between the trained "
        "model's map and the map after each randomization step "
        "(metrics.model_randomization), and the rank correlation between the maps "
        "of the top class and of another class (metrics.class_sensitivity). Writes "
        "the per-image values (JSON) and the curves (PNG).",
    )
    _add_data_arguments(p)
    add_model_argument(p)
    p.add_argument(
        "--normalization", default="own", choices=sorted(NORMALIZATIONS),
        help="input statistics (as for benchmark; default: own)",
    )  # fmt: skip
    add_layers_argument(p, "--layers")
    p.set_defaults(layers=DEFAULT_LAYERS)
    add_methods_argument(p, "--methods", DEFAULT_METHODS)
    p.add_argument(
        "--order", default="cascading", choices=sanity.ORDERS,
        help="cascading: randomize from the output down, cumulatively (Adebayo et "
        "al.); independent: one module at a time (default: cascading)",
    )  # fmt: skip
    p.add_argument(
        "--granularity", default="block", choices=sanity.GRANULARITIES,
        help="block: one step per top-level part of EfficientNet-Lite (19 for "
        "Lite0); module: one per module with parameters (99 for Lite0); whole: one "
        "step that randomizes the whole network (the cascade's end point only); "
        "none: no randomization, class sensitivity only (default: block)",
    )  # fmt: skip
    p.add_argument(
        "--other", default="second,last",
        help="the classes whose maps are compared with the top class's, comma-"
        "separated: second (the second most likely), last (the least likely), or "
        "none (default: second,last)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0, help="randomization seed (default: 0)"
    )
    _add_run_arguments(p)
    p.add_argument(
        "--out", default="sanity.json",
        help="per-image results (JSON); the plot goes beside it as .png "
        "(default: sanity.json)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_start_limit_arguments(p)
    p.add_argument(
        "--batch-size", type=int, default=8, help="images checked at once (default: 8)"
    )
    add_sharded_run_arguments(p)


def run(args: argparse.Namespace) -> None:
    other = _other_classes(args.other)
    _check_counts(args)
    if args.granularity == "none" and not other:
        raise UsageError("--granularity none with --other none leaves nothing to do")
    _check_device(args.device)
    prepare_out(Path(args.out), "results")
    try:
        items = read_image_folder(args.images, args.labels, devkit=args.devkit)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--images: {error}") from None
    items = items[args.start :][: args.limit]
    if not items:
        raise UsageError("no images left after --start and --limit; loosen them")
    loaded = load(args.model, args.normalization)
    layers = select_layers(loaded, args.layers)
    _check_items(loaded, items)
    check_layer_outputs(loaded, layers, loaded.preprocess(items[0].load()))
    methods = check_methods(loaded, layers, args.methods)
    if args.granularity == "block":
        try:
            sanity.block_steps(loaded.model)
        except ValueError as error:
            raise UsageError(
                str(error).replace("granularity ", "--granularity ")
            ) from None
    module_names = {module: name for name, module in loaded.model.named_modules()}
    settings = {
        "model": args.model,
        "normalization": args.normalization,
        "images": str(args.images),
        "labels": args.labels and str(Path(args.labels).resolve()),
        "start": args.start,
        "limit": args.limit,
        "n_images": len(items),
    }
    info = init_ranks(timeout_s=args.dist_timeout, device=args.device)
    finished = False
    try:
        result = sanity.run_sanity(
            loaded.model, items, loaded.preprocess,
            {layer: module_names[module] for layer, module in layers.items()},
            methods, Path(args.out), settings, order=args.order,
            granularity=args.granularity, seed=args.seed, other=other,
            batch_size=args.batch_size, resume=args.resume, info=info,
        )  # fmt: skip
        finished = True
    except (FileExistsError, ValueError) as error:  # earlier shards, other settings
        raise UsageError(str(error)) from None
    finally:
        close_ranks(info, finished)
    if result is not None:
        write_sanity_report(result, Path(args.out))


def _other_classes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in sanity.OTHER_CLASSES]
    if unknown or not names or len(set(names)) != len(names):
        raise UsageError(f"--other {text!r}: give second, last, second,last or none")
    return names


def _check_counts(args: argparse.Namespace) -> None:
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if args.start < 0:
        raise UsageError(f"--start must be 0 or more, got {args.start}")
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit must be positive, got {args.limit}")
