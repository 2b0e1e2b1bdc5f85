"""Command line: ``python -m captum_shallowcam {demo,explain,benchmark}``.

Thin by design: it parses arguments and calls the public API
(:mod:`captum_shallowcam.models`, the attribution classes,
:mod:`captum_shallowcam.metrics`, :mod:`captum_shallowcam.evaluation`).
"""

import argparse
import json
import time
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from captum_shallowcam.evaluation import (
    EvaluationResult,
    image_batches,
    make_explainer,
    markdown_table,
    merge_results,
    overall_plot,
    summary_rows,
)
from captum_shallowcam.images import LabelledImage, read_image_folder, sample_images
from captum_shallowcam.metrics import PROTOCOLS, deletion_insertion
from captum_shallowcam.models import available_models, load_model
from captum_shallowcam.visualization import layer_map_figure

PROTOCOL = "substrate: zeros in normalised input space (mean colour); insertion from Gaussian blur (kernel 11, sigma 5); score: softmax probability of the target"


def _select_layers(loaded, names: Optional[str]):
    if not names:
        return dict(loaded.layers)
    chosen = {}
    modules = dict(loaded.model.named_modules())
    for name in names.split(","):
        name = name.strip()
        if name in loaded.layers:
            chosen[name] = loaded.layers[name]
        elif name in modules:
            chosen[name] = modules[name]
        else:
            raise SystemExit(
                f"Unknown layer '{name}'. Default layers: {', '.join(loaded.layers)}; "
                "or give a module path such as '_blocks.3'."
            )
    return chosen


def _explain_and_score(loaded, items: Sequence[LabelledImage], layers, methods, step, out):
    _, inputs, targets = next(image_batches(items, loaded.preprocess, loaded.model, len(items)))
    maps = {m: make_explainer(loaded.model, list(layers.values()), m)(inputs, targets) for m in methods}
    names = list(layers)
    labels = [
        f"{item.name}\n→ {loaded.categories[t] if loaded.categories else t}"
        for item, t in zip(items, targets.tolist())
    ]
    fig = layer_map_figure(loaded.unnormalize(inputs), maps, names, row_labels=labels)
    fig.savefig(out, dpi=110)
    print(f"figure: {out}")
    print(f"\ndeletion/insertion, step {step} ({PROTOCOL})")
    print(f"{'image':<18}{'method':<16}" + "".join(f"{n:>10}" for n in names) + "   (overall)")
    for method, per_layer in maps.items():
        overall = [
            deletion_insertion(loaded.model, inputs, m, target=targets, step=step).overall
            for m in per_layer
        ]
        for i, item in enumerate(items):
            print(f"{item.name:<18}{method:<16}" + "".join(f"{o[i]:>10.2f}" for o in overall))


def demo(args: argparse.Namespace) -> None:
    start = time.time()
    loaded = load_model("efficientnet-lite0")
    layers = dict(loaded.layers)
    print(f"EfficientNet-Lite0 (ImageNet weights), layers: {', '.join(layers)}")
    _explain_and_score(loaded, sample_images(), layers, ["layercam", "shallowcam"], args.step, args.out)
    print(f"\ndone in {time.time() - start:.0f} s")


def explain(args: argparse.Namespace) -> None:
    loaded = load_model(args.model)
    layers = _select_layers(loaded, args.layer)
    item = LabelledImage(Path(args.image), args.target, Path(args.image).stem)
    _explain_and_score(loaded, [item], layers, args.method.split(","), args.step, args.out)


def benchmark(args: argparse.Namespace) -> None:
    loaded = load_model(args.model)
    if args.channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    layers = _select_layers(loaded, args.layers)
    items = read_image_folder(args.images, args.labels, devkit=args.devkit)
    if args.classes:
        keep = _parse_ranges(args.classes)
        items = [item for item in items if item.target in keep]
    items = items[args.start :]
    if args.limit:
        items = items[: args.limit]
    if not items:
        raise SystemExit("No images left to evaluate.")
    methods = args.methods.split(",")
    from captum_shallowcam.distributed import init_ranks, run_benchmark
    from captum_shallowcam.metrics.protocols import describe, protocol_kwargs

    metric_kwargs = protocol_kwargs(args.protocol, step=args.step)
    settings = {
        "model": args.model,
        "images": str(args.images),
        "n_images": len(items),
        "start": args.start,
        "classes": args.classes,
        "protocol": args.protocol,
        "metric": describe(args.protocol, metric_kwargs),
        "channels_last": args.channels_last,
        "amp": args.amp,
    }
    metric_kwargs["max_examples_per_batch"] = args.max_examples_per_batch
    if args.amp == "bf16":
        metric_kwargs["autocast_dtype"] = torch.bfloat16
    info = init_ranks(timeout_s=args.dist_timeout, device=args.device)
    try:
        result = run_benchmark(
            loaded.model, items, loaded.preprocess, layers, methods, Path(args.out),
            metric_kwargs, settings, batch_size=args.batch_size, resume=args.resume,
            info=info,
        )  # fmt: skip
    except (FileExistsError, ValueError) as error:  # earlier shards, other settings
        raise SystemExit(str(error)) from error
    if result is not None:
        _write_report(result, Path(args.out))


def _write_report(result: EvaluationResult, out: Path) -> None:
    """Prints the table; writes JSON (per image), markdown and the plot."""
    s = result.settings
    methods = list(result.scores)
    baseline = "layercam" if "layercam" in methods else methods[0]
    table = markdown_table(summary_rows(result, baseline), baseline)
    header = (
        f"{s['model']}, {len(result.images)} images from {s['images']}, step {s['step']}; "
        f"{s.get('metric', s['protocol'])}"
    )
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=1))
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n")
    overall_plot(result, title=header).savefig(out.with_suffix(".png"), dpi=110)
    print(f"\nper-image results: {out}; table: {out.with_suffix('.md')}; plot: {out.with_suffix('.png')}")


def report(args: argparse.Namespace) -> None:
    from captum_shallowcam.distributed import merge_shards

    results = []
    for given in map(Path, args.results):
        shards = sorted(given.glob("*.shard-*.jsonl")) if given.is_dir() else []
        if given.is_dir() and not shards:
            raise SystemExit(f"No shard files (*.shard-*.jsonl) in {given}.")
        if shards or given.suffix == ".jsonl":
            results.append(merge_shards(shards or [given]))
        else:
            results.append(EvaluationResult.from_dict(json.loads(given.read_text())))
    merged = merge_results(results)
    if args.classes:
        keep = _parse_ranges(args.classes)
        merged = merged.subset([i for i, t in enumerate(merged.targets) if t in keep])
        merged.settings["classes"] = args.classes
    if not merged.images:
        raise SystemExit("No images left to report.")
    _write_report(merged, Path(args.out))


def _parse_ranges(text: str) -> set:
    keep = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        keep.update(range(int(low), int(high or low) + 1))
    return keep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m captum_shallowcam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="LayerCam vs LayerShallowCam on the bundled photos")
    p.add_argument("--out", default="shallowcam_demo.png", help="figure path (PNG)")
    p.add_argument("--step", type=int, default=7168, help="deletion/insertion step (pixels)")
    p.set_defaults(func=demo)

    p = sub.add_parser("explain", help="explain your own image")
    p.add_argument("image")
    p.add_argument("--model", default="efficientnet-lite0", choices=available_models())
    p.add_argument("--layer", default=None, help="comma-separated layer names (default: all default layers)")
    p.add_argument("--method", default="layercam,shallowcam", help="comma-separated methods")
    p.add_argument("--target", type=int, default=None, help="class index (default: predicted)")
    p.add_argument("--step", type=int, default=7168)
    p.add_argument("--out", default="explanation.png")
    p.set_defaults(func=explain)

    p = sub.add_parser("benchmark", help="deletion/insertion per layer and method")
    p.add_argument("--images", required=True, help="folder with labels.csv, or CUB-200-2011 root")
    p.add_argument("--labels", default=None, help="labels CSV (default: IMAGES/labels.csv)")
    p.add_argument(
        "--devkit",
        default=None,
        help="ILSVRC2012 val as a flat folder: the unpacked devkit (data/meta.mat, "
        "data/ILSVRC2012_validation_ground_truth.txt) or torchvision's meta.bin",
    )
    p.add_argument("--model", default="efficientnet-lite0", choices=available_models())
    p.add_argument("--layers", default=None, help="comma-separated layer names")
    p.add_argument(
        "--methods",
        default="layercam,shallowcam-v1,shallowcam-v2,shallowcam-v3,relevancecam,gradcam",
    )
    p.add_argument(
        "--protocol",
        default="captum-shallowcam",
        choices=sorted(PROTOCOLS),
        help="metric preset (step and substrates; recorded in the result): "
        "captum-shallowcam (step 224, torchvision blur 11/5), rise (RISE's own code), "
        "groupcam (step 1792, blur 51/50)",
    )
    p.add_argument("--step", type=int, default=None, help="pixels per step (default: the protocol's)")
    p.add_argument("--start", type=int, default=0, help="skip the first N images")
    p.add_argument("--limit", type=int, default=None, help="use N images (after --start)")
    p.add_argument("--classes", default=None, help="class index ranges to keep, e.g. 7-24,80-100")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-examples-per-batch", type=int, default=None)
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="run the model in channels-last memory format (about 1.5x faster on CPU for "
        "EfficientNet-Lite0; scores equal up to float rounding)",
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
        help="run the metric's forward passes under torch.autocast (explanations stay float32)",
    )
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if CUDA is available, else cpu")
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds a rank waits for the others under torchrun before failing",
    )
    p.add_argument("--out", default="results.json")
    p.set_defaults(func=benchmark)

    p = sub.add_parser("report", help="merge benchmark results and report them again")
    p.add_argument(
        "results",
        nargs="+",
        help="JSON files written by benchmark, shard files (.jsonl) or folders of shard files",
    )
    p.add_argument("--classes", default=None, help="keep these class index ranges only")
    p.add_argument("--out", default="report.json")
    p.set_defaults(func=report)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_grad_enabled(True)
    args.func(args)


if __name__ == "__main__":
    main()
