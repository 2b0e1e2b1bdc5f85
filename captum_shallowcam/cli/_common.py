"""Command line: ``python -m captum_shallowcam {demo,explain,benchmark,report}``.

Thin by design: it parses arguments, checks them, and calls the public API
(:mod:`captum_shallowcam.models`, the attribution classes,
:mod:`captum_shallowcam.metrics`, :mod:`captum_shallowcam.evaluation`). A
mistake in the arguments (unknown method, layer or class, a missing photo,
folder or weights file) is reported before anything is computed, in one line on
stderr, with exit status 2.
"""

import argparse
import json
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from PIL import Image

from captum_shallowcam.evaluation import (
    EvaluationResult,
    markdown_table,
    merge_results,
    overall_plot,
    summary_rows,
)
from captum_shallowcam.images import (
    SAMPLE_IMAGES,
    LabelledImage,
    read_image_folder,
    sample_images,
)
from captum_shallowcam.methods import make_explainer, method_names, methods_help
from captum_shallowcam.metrics import PROTOCOLS, deletion_insertion
from captum_shallowcam.models import (
    NORMALIZATIONS,
    available_models,
    default_layer_names,
    load_model,
    torchvision_checkpoint_path,
)
from captum_shallowcam.visualization import layer_map_figure

PROG = "python -m captum_shallowcam"

DESCRIPTION = f"""\
Class activation maps for shallow layers (LayerShallowCam, LayerCam,
LayerRelevanceCam) and their deletion/insertion scores.

examples:
  {PROG} demo
  {PROG} explain photo.jpg --layer stage2,stage3 --out explanation.png
  {PROG} benchmark --images DIR --step 224
  {PROG} report run1.json run2.json --out merged.json

'{PROG} COMMAND --help' lists a command's options and their defaults.
"""

#: Fewer photos than this, and a bootstrap interval is too rough to trust.
MIN_PHOTOS_FOR_INTERVALS = 20

PROTOCOL = "substrate: zeros in normalised input space (mean colour); insertion from Gaussian blur (kernel 11, sigma 5); score: softmax probability of the target"
SCORE = "overall = 100 x (insertion AUC - deletion AUC), higher is better"


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors in one line too (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(name: str, normalization: str = "own"):
    """``load_model``, with a missing weights file reported as a usage error."""
    if name in ("vgg16", "vgg16_bn", "resnet18", "resnet50"):
        path = Path(torchvision_checkpoint_path(name))
        if not path.is_file():
            raise UsageError(
                f"no ImageNet weights for {name}: expected {path} (captum_shallowcam never "
                "downloads); copy the torchvision checkpoint there (see the README), set "
                "TORCH_HOME to the folder that has it, or use --model efficientnet-lite0"
            )
    try:
        return load_model(name, normalization=normalization)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None


def _check_step(step: int | None) -> None:
    if step is not None and step <= 0:
        raise UsageError(f"--step must be a positive number of pixels, got {step}")
    if step is not None and step >= 2**63:
        raise UsageError(
            f"--step {step} does not fit in a 64-bit integer; a step of H x W pixels "
            "or more already perturbs the whole image at once"
        )


def _check_methods(loaded, layers, text: str) -> list[str]:
    """The method names, each checked by building its explainer (no computation)."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise UsageError(
            f"--method(s) is empty; choose from {', '.join(method_names())}"
        )
    for method in methods:
        try:
            make_explainer(loaded.model, list(layers.values()), method)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return methods


def _prepare_out(path: Path, what: str) -> None:
    """Creates the folder that will hold ``path``; refuses what cannot be written."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name for the {what}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the folder {path.parent} for --out ({error.strerror}); "
            "choose another --out"
        ) from None
    existed = path.exists()
    try:  # writable now, not after the work
        with open(path, "a"):
            pass
    except OSError as error:
        raise UsageError(
            f"cannot write --out {path} ({error.strerror}); choose another --out"
        ) from None
    if not existed:
        path.unlink()


def _check_layer_outputs(loaded, layers, image: torch.Tensor) -> None:
    """One forward pass of ``image``: each layer is called once and gives a
    feature map, or a one-line error before any map is computed."""
    calls: dict[str, list] = {name: [] for name in layers}
    handles = [
        module.register_forward_hook(
            lambda m, i, output, name=name: calls[name].append(output)
        )
        for name, module in layers.items()
    ]
    try:
        with torch.no_grad():
            loaded.model(image[None])
    finally:
        for handle in handles:
            handle.remove()
    for name, outputs in calls.items():
        if len(outputs) != 1:
            raise UsageError(
                f"layer '{name}' is called {len(outputs)} times in one forward pass "
                f"of {loaded.name}; choose a layer called once, e.g. "
                f"{', '.join(loaded.layers)}"
            )
        output = outputs[0]
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = (
                tuple(output.shape) if isinstance(output, torch.Tensor) else "no tensor"
            )
            raise UsageError(
                f"layer '{name}' gives {shape}, not a feature map N x K x h x w; "
                f"choose a convolutional layer, e.g. {', '.join(loaded.layers)}"
            )


def _check_figure_suffix(path: Path) -> None:
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UsageError(
            f"--out {path}: matplotlib cannot write '{path.suffix}' figures; use .png, "
            ".pdf or .svg"
        )


def _select_layers(loaded, names: str | None):
    if not names:
        return dict(loaded.layers)
    chosen = {}
    modules = dict(loaded.model.named_modules())
    for name in names.split(","):
        name = name.strip()
        if name in loaded.layers:
            chosen[name] = loaded.layers[name]
        elif name in modules and name:
            chosen[name] = modules[name]
        else:
            raise UsageError(
                f"Unknown layer '{name}' of {loaded.name}: choose from "
                f"{', '.join(loaded.layers)}, or give a module path such as "
                f"'{_module_path_example(loaded)}'"
            )
    return chosen


def _module_path_example(loaded) -> str:
    first = next(iter(loaded.layers.values()))
    return next(n for n, m in loaded.model.named_modules() if m is first)


def _photo_name(item: LabelledImage) -> str:
    """A photo is named by its file name, bundled or not (``chelsea_cat``)."""
    return item.path.stem


def _bundled_label(item: LabelledImage) -> int | None:
    """The label of a bundled photo (the class the demo explains), else None."""
    bundled = {i.path.resolve(): i.target for i in sample_images()}
    return bundled.get(item.path.resolve())


def _class_name(loaded, index: int) -> str:
    return f"{index} '{loaded.categories[index]}'" if loaded.categories else str(index)


def _explain_and_score(
    loaded,
    items: Sequence[LabelledImage],
    layers,
    methods,
    step: int,
    out: Path,
    target_source: str,
) -> dict[str, list[list[float]]]:
    """Explains, scores and draws ``items``; returns ``scores[method][layer][photo]``.
    An item's ``target`` of None means its predicted class; ``target_source`` says
    where the other targets come from."""
    inputs = torch.stack([loaded.preprocess(item.load()) for item in items])
    with torch.no_grad():
        probabilities = loaded.model(inputs).softmax(dim=1)
    predicted = probabilities.argmax(dim=1).tolist()
    targets = torch.tensor(
        [p if item.target is None else item.target for item, p in zip(items, predicted)]
    )
    names = [_photo_name(item) for item in items]
    width = max(len(n) for n in names) + 2
    print("class explained per photo:")
    for item, name, target, p, probs in zip(
        items, names, targets.tolist(), predicted, probabilities
    ):
        if item.target is None:
            source = f"the prediction, p = {probs[p]:.2f}"
            label = _bundled_label(item)
            if label is not None and label != p:
                source += (
                    f"; its label is {_class_name(loaded, label)}: --target {label}"
                )
        else:
            source = f"{target_source}, p = {probs[target]:.2f}; " + (
                "also the prediction"
                if p == target
                else f"predicted: {_class_name(loaded, p)}"
            )
        print(f"  {name:<{width}}{_class_name(loaded, target)} ({source})")

    maps = {
        m: make_explainer(loaded.model, list(layers.values()), m)(inputs, targets)
        for m in methods
    }
    layer_names = list(layers)
    scores: dict[str, list[list[float]]] = {
        method: [
            deletion_insertion(
                loaded.model, inputs, m, target=targets, step=step
            ).overall.tolist()
            for m in per_layer
        ]
        for method, per_layer in maps.items()
    }
    n_points = -(-inputs.shape[-2] * inputs.shape[-1] // step) + 1
    print(f"\ndeletion/insertion score per layer: {SCORE}")
    print(f"step {step} pixels ({n_points} points per curve); {PROTOCOL}")
    method_width = max(len("method"), *(len(m) for m in methods)) + 2
    print(
        f"{'photo':<{width}}{'method':<{method_width}}"
        + "".join(f"{n:>10}" for n in layer_names)
    )
    for i, name in enumerate(names):
        for method in methods:
            print(
                f"{name:<{width}}{method:<{method_width}}"
                + "".join(f"{per_image[i]:>10.2f}" for per_image in scores[method])
            )

    labels = [f"{n}\n{_class_name(loaded, t)}" for n, t in zip(names, targets.tolist())]
    title = (
        f"{loaded.name}: {', '.join(methods)}; panel titles: layer (map size), "
        f"{SCORE}, step {step}; colours: map scaled to [0, 1]"
    )
    fig = layer_map_figure(
        loaded.unnormalize(inputs), maps, layer_names, row_labels=labels, scores=scores,
        title=title,
    )  # fmt: skip
    fig.savefig(out, dpi=100)
    print(f"\nfigure: {out}")
    return scores


def _what_few_photos_show(
    scores: dict[str, list[list[float]]], method: str, baseline: str
) -> str:
    """The demo's caveat: how often ``method`` leads ``baseline`` here, and why
    that is no ranking."""
    diffs = [
        a - b
        for per_layer, base_layer in zip(scores[method], scores[baseline])
        for a, b in zip(per_layer, base_layer)
    ]
    ahead = sum(d > 0 for d in diffs)
    n_photos = len(scores[method][0])
    return (
        f"what {n_photos} photos can show: {method} is ahead of {baseline} in {ahead} of "
        f"{len(diffs)} (photo, layer) pairs here, with differences from "
        f"{min(diffs):+.1f} to {max(diffs):+.1f} points. From photo to photo such "
        "differences change sign, so a handful of photos cannot rank two methods; "
        "they show what the maps look like. The ranking comes from paired "
        "comparisons on 200 photos with 95% intervals (the README's table and "
        "docs/results.rst); run it on your own photos with "
        f"'{PROG} benchmark --images FOLDER'."
    )


def demo(args: argparse.Namespace) -> None:
    start = time.time()
    _check_step(args.step)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(
            f"--out {out_dir} is a file; give a folder (default: shallowcam_demo)"
        )
    figure = out_dir / "layer_maps.png"
    _prepare_out(figure, "figure")
    loaded = _load("efficientnet-lite0")
    layers = dict(loaded.layers)
    print(f"EfficientNet-Lite0 (ImageNet weights), layers: {', '.join(layers)}")
    scores = _explain_and_score(
        loaded, sample_images(), layers, ["layercam", "shallowcam"], args.step, figure,
        target_source="the photo's label",
    )  # fmt: skip
    print("\n" + textwrap.fill(_what_few_photos_show(scores, "shallowcam", "layercam")))
    print(f"\ndone in {time.time() - start:.0f} s")


def _photo(text: str) -> LabelledImage:
    """The photo to explain: a path, or the name of a bundled photo."""
    path = Path(text)
    if not path.exists():
        bundled = {p.stem: p for p in (i.path for i in sample_images())}
        key = Path(text).stem if text in SAMPLE_IMAGES or text in bundled else None
        if key is None:
            raise UsageError(
                f"no photo at {text}; give the path of a JPEG or PNG file, or a bundled "
                f"photo: {', '.join(bundled)}"
            )
        path = bundled[key]
    if not path.is_file():
        raise UsageError(f"{text} is not a file; give the path of a JPEG or PNG photo")
    try:
        with Image.open(path) as image:
            image.load()  # decodes it all: a truncated file fails here
    except Exception as error:  # PIL raises several types for unreadable files
        raise UsageError(
            f"cannot read {path} as an image ({type(error).__name__}: {error}); give "
            "a JPEG or PNG photo"
        ) from None
    return LabelledImage(path, None, path.stem)


def explain(args: argparse.Namespace) -> None:
    _check_step(args.step)
    item = _photo(args.image)
    out = Path(args.out)
    _check_figure_suffix(out)
    _prepare_out(out, "figure")
    loaded = _load(args.model)
    layers = _select_layers(loaded, args.layer)
    _check_layer_outputs(loaded, layers, loaded.preprocess(item.load()))
    methods = _check_methods(loaded, layers, args.method)
    if args.target is not None:
        n_classes = len(loaded.categories)
        if not 0 <= args.target < n_classes:
            raise UsageError(
                f"--target {args.target} is not a class of {loaded.name}: give 0 to "
                f"{n_classes - 1} (e.g. {_class_name(loaded, 282)}), or leave it out to "
                "explain the predicted class"
            )
        item = LabelledImage(item.path, args.target, item.name)
    _explain_and_score(
        loaded,
        [item],
        layers,
        methods,
        args.step,
        out,
        target_source="given by --target",
    )


def benchmark(args: argparse.Namespace) -> None:
    _check_step(args.step)
    _check_counts(args)
    _check_device(args.device)
    _prepare_out(Path(args.out), "results")
    try:
        items = read_image_folder(args.images, args.labels, devkit=args.devkit)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--images: {error}") from None
    loaded = _load(args.model, args.normalization)
    if args.channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    layers = _select_layers(loaded, args.layers)
    if args.classes:
        keep = _parse_ranges(args.classes)
        items = [item for item in items if item.target in keep]
    items = items[args.start :]
    if args.limit:
        items = items[: args.limit]
    if not items:
        raise UsageError(
            "no images left to evaluate after --classes, --start and --limit; loosen them"
        )
    _check_items(loaded, items)
    _check_layer_outputs(loaded, layers, loaded.preprocess(items[0].load()))
    methods = _check_methods(loaded, layers, args.methods)
    from captum_shallowcam.distributed import close_ranks, init_ranks, run_benchmark
    from captum_shallowcam.metrics.protocols import describe, protocol_kwargs

    metric_kwargs = protocol_kwargs(args.protocol, step=args.step)
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
    metric_kwargs["max_examples_per_batch"] = args.max_examples_per_batch
    if args.amp == "bf16":
        metric_kwargs["autocast_dtype"] = torch.bfloat16
    info = init_ranks(timeout_s=args.dist_timeout, device=args.device)
    finished = False
    try:
        result = run_benchmark(
            loaded.model, items, loaded.preprocess, layers, methods, Path(args.out),
            metric_kwargs, settings, batch_size=args.batch_size, resume=args.resume,
            info=info,
        )  # fmt: skip
        finished = True
    except (FileExistsError, ValueError) as error:  # earlier shards, other settings
        raise UsageError(str(error)) from None
    finally:
        close_ranks(info, finished)
    if result is not None:
        _write_report(result, Path(args.out))


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
        _parse_ranges(args.classes)


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


def _write_report(result: EvaluationResult, out: Path) -> None:
    """Prints the table; writes JSON (per image), markdown and the plot."""
    s = result.settings
    methods = list(result.scores)
    baseline = "layercam" if "layercam" in methods else methods[0]
    table = markdown_table(summary_rows(result, baseline), baseline)
    n_images = len(result.images)
    header = (
        f"{s['model']}, {n_images} images from {s['images']}, step {s['step']}; "
        f"{s.get('metric', s['protocol'])}"
    )
    legend = (
        f"Columns: mean AUCs over the images (deletion: lower is better; insertion: "
        f"higher is better); {SCORE}; Δ: mean paired difference of overall to "
        f"{baseline} on the same images, with its 95% bootstrap interval."
    )
    if n_images < MIN_PHOTOS_FOR_INTERVALS:
        legend += (
            f" Caution: from {n_images} images (fewer than {MIN_PHOTOS_FOR_INTERVALS}) the "
            "bootstrap has few distinct resamples; its intervals are too narrow to trust."
        )
    print(f"\n{header}\n\n{table}\n\n{legend}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=1))
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n\n{legend}\n")
    plot_title = f"{s['model']}, {n_images} images, step {s['step']}"
    overall_plot(result, title=plot_title).savefig(out.with_suffix(".png"), dpi=100)
    print(
        f"\nper-image results: {out}; table: {out.with_suffix('.md')}; plot: {out.with_suffix('.png')}"
    )


def report(args: argparse.Namespace) -> None:
    if args.classes:
        _parse_ranges(args.classes)
    _prepare_out(Path(args.out), "report")
    from captum_shallowcam.distributed import merge_shards

    results = []
    for given in map(Path, args.results):
        shards = sorted(given.glob("*.shard-*.jsonl")) if given.is_dir() else []
        if given.is_dir() and not shards:
            raise UsageError(
                f"no shard files (*.shard-*.jsonl) in {given}; give JSON or .jsonl files"
            )
        if shards or given.suffix == ".jsonl":
            results.append(_read_shards(given, shards or [given], merge_shards))
        else:
            results.append(_read_result(given))
        _check_result(results[-1], given)
    try:
        merged = merge_results(results)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.classes:
        keep = _parse_ranges(args.classes)
        merged = merged.subset([i for i, t in enumerate(merged.targets) if t in keep])
        merged.settings["classes"] = args.classes
    if not merged.images:
        raise UsageError("no images left to report after --classes; loosen it")
    _check_finite_scores(merged)
    _write_report(merged, Path(args.out))


def _check_finite_scores(result: EvaluationResult) -> None:
    """A NaN score would make its row of the table NaN without a word."""
    for method, per_layer in result.scores.items():
        for layer, entry in per_layer.items():
            for kind, values in entry.items():
                bad = [
                    i
                    for i, v in enumerate(values)
                    if not isinstance(v, (int, float)) or not math.isfinite(v)
                ]
                if bad:
                    raise UsageError(
                        f"the {kind} score of {method} at {layer} is {values[bad[0]]} "
                        f"for {result.images[bad[0]]} ({len(bad)} images in all); "
                        "score those photos again or leave them out"
                    )


def _read_shards(given: Path, paths: list[Path], merge_shards) -> EvaluationResult:
    try:
        return merge_shards(paths)
    except FileNotFoundError:
        raise UsageError(
            f"no shard file {given}; give files written by benchmark"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f"{type(error).__name__}: {error}"
        raise UsageError(
            f"{given} is not shard files written by benchmark ({detail})"
        ) from None


def _check_result(result: EvaluationResult, path: Path) -> None:
    """Every (method, layer) of the result has one score of each kind per photo."""
    layers = result.settings.get("layers")
    n = len(result.images)
    problem = None
    if not isinstance(layers, list) or not layers:
        problem = "its settings name no layers"
    elif len(result.targets) != n:
        problem = f"it has {len(result.targets)} targets for {n} images"
    elif not result.scores:
        problem = "it holds no scores"
    for method, per_layer in result.scores.items():
        for layer in layers or []:
            entry = per_layer.get(layer) if isinstance(per_layer, dict) else None
            for kind in ("deletion", "insertion", "overall"):
                values = entry.get(kind) if isinstance(entry, dict) else None
                if problem is None and (
                    not isinstance(values, list) or len(values) != n
                ):
                    count = len(values) if isinstance(values, list) else "no"
                    problem = (
                        f"{method} at {layer} has {count} {kind} scores for {n} images"
                    )
    if problem is not None:
        raise UsageError(f"{path} is not a complete benchmark result: {problem}")


def _read_result(path: Path) -> EvaluationResult:
    try:
        return EvaluationResult.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UsageError(
            f"no results file {path}; give JSON files written by benchmark"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a JSON file written by benchmark") from None
    except (OSError, ValueError) as error:
        raise UsageError(
            f"cannot read {path} ({type(error).__name__}: {error}); give JSON files "
            "written by benchmark"
        ) from None


def _parse_ranges(text: str) -> set:
    keep = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            keep.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise UsageError(
                f"--classes {text!r}: '{part}' is not a class index or range; write e.g. 7-24,80"
            ) from None
    return keep


def _layers_help() -> str:
    return "; ".join(
        f"{m}: {', '.join(default_layer_names(m))}" for m in available_models()
    )


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=formatter)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    models = ", ".join(available_models())

    p = sub.add_parser(
        "demo",
        help="LayerCam vs LayerShallowCam on the bundled photos",
        description="LayerCam and LayerShallowCam at the seven stages of EfficientNet-Lite0 "
        "on the three bundled photos, each explained for its label; prints the "
        "deletion/insertion scores and writes a figure into --out.",
    )
    p.add_argument(
        "--out", default="shallowcam_demo",
        help="output folder; the figure is OUT/layer_maps.png (default: shallowcam_demo)",
    )  # fmt: skip
    p.add_argument(
        "--step", type=int, default=7168,
        help="deletion/insertion step in pixels (default: 7168; the paper's, 224, is "
        "about 30 times slower)",
    )  # fmt: skip
    p.set_defaults(func=demo)

    p = sub.add_parser(
        "explain",
        help="explain your own photo (or a bundled one)",
        description="Explains one photo at chosen layers with chosen methods, prints the class "
        "explained and the deletion/insertion scores, and writes a figure.",
    )
    p.add_argument(
        "image",
        help="path of a JPEG or PNG photo, or a bundled photo: "
        + ", ".join(Path(f).stem for f in SAMPLE_IMAGES),
    )
    p.add_argument(
        "--model", default="efficientnet-lite0", choices=available_models(), metavar="MODEL",
        help=f"one of {models} (default: efficientnet-lite0)",
    )  # fmt: skip
    p.add_argument(
        "--layer", default=None,
        help="comma-separated layer names, or module paths of the model (default: all of "
        f"the model's layers; {_layers_help()})",
    )  # fmt: skip
    p.add_argument(
        "--method", default="layercam,shallowcam",
        help=f"comma-separated methods (default: layercam,shallowcam); {methods_help()}",
    )  # fmt: skip
    p.add_argument(
        "--target", type=int, default=None,
        help="ImageNet class index to explain, 0 to 999 (default: the predicted class)",
    )  # fmt: skip
    p.add_argument(
        "--step", type=int, default=7168,
        help="deletion/insertion step in pixels (default: 7168)",
    )  # fmt: skip
    p.add_argument(
        "--out", default="explanation.png",
        help="figure file, .png, .pdf or .svg (default: explanation.png)",
    )  # fmt: skip
    p.set_defaults(func=explain)

    p = sub.add_parser(
        "benchmark",
        help="deletion/insertion per layer and method over a folder of photos",
        description="Deletion/insertion of every method at every layer on a folder of "
        "labelled photos, compared to LayerCam image by image; writes the per-image "
        "scores (JSON), a table (Markdown) and a plot (PNG).",
    )
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
    p.add_argument(
        "--model", default="efficientnet-lite0", choices=available_models(), metavar="MODEL",
        help=f"one of {models} (default: efficientnet-lite0)",
    )  # fmt: skip
    p.add_argument(
        "--layers", default=None,
        help="comma-separated layer names, or module paths of the model (default: all of "
        f"the model's layers; {_layers_help()})",
    )  # fmt: skip
    p.add_argument(
        "--normalization", default="own", choices=sorted(NORMALIZATIONS),
        help="input statistics: own (those the weights were trained with; "
        "EfficientNet-Lite: [-1, 1]) or imagenet (ImageNet mean and std, as many "
        "pipelines use for every model) (default: own)",
    )  # fmt: skip
    default_methods = (
        "layercam,shallowcam-v1,shallowcam-v2,shallowcam-v3,relevancecam,gradcam"
    )
    p.add_argument(
        "--methods", default=default_methods,
        help=f"comma-separated methods (default: {default_methods}); {methods_help()}",
    )  # fmt: skip
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
    p.add_argument(
        "--start", type=int, default=0, help="skip the first N images (default: 0)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use N images after --start (default: all)",
    )
    p.add_argument(
        "--classes", default=None,
        help="class index ranges to keep, e.g. 7-24,80-100 (default: all)",
    )  # fmt: skip
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
        "--resume",
        action="store_true",
        help="continue a run: skip the (photo, layer, method) rows already in the "
        "shard files beside --out",
    )
    p.add_argument(
        "--amp",
        default=None,
        choices=["bf16"],
        help="run the metric's forward passes under torch.autocast (explanations stay "
        "float32; default: off)",
    )
    p.add_argument(
        "--device", default=None,
        help="default: cuda:LOCAL_RANK if CUDA is available, else cpu",
    )  # fmt: skip
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds a rank waits for the others under torchrun before failing (default: 1800)",
    )
    p.add_argument(
        "--out", default="results.json",
        help="per-image results (JSON); the table and plot go beside it as .md and .png "
        "(default: results.json)",
    )  # fmt: skip
    p.set_defaults(func=benchmark)

    p = sub.add_parser(
        "report",
        help="merge benchmark results (JSON) and report them again",
        description="Merges JSON files written by benchmark (runs on other images add rows, "
        "runs of other methods add methods) and writes the table and plot again.",
    )
    p.add_argument(
        "results",
        nargs="+",
        help="JSON files written by benchmark, shard files (.jsonl) or folders of shard files",
    )
    p.add_argument(
        "--classes", default=None,
        help="keep these class index ranges only, e.g. 7-24,80 (default: all)",
    )  # fmt: skip
    p.add_argument(
        "--out", default="report.json",
        help="merged results (JSON), with .md and .png beside it (default: report.json)",
    )  # fmt: skip
    p.set_defaults(func=report)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    try:
        args.func(args)
    except UsageError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
