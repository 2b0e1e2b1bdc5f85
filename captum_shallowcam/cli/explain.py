"""``explain``: one photo (yours or a bundled one) at chosen layers and methods."""

import argparse
from pathlib import Path

from PIL import Image

from captum_shallowcam.cli import maps
from captum_shallowcam.cli._common import (
    UsageError,
    add_layers_argument,
    add_methods_argument,
    add_model_argument,
    check_figure_suffix,
    check_layer_outputs,
    check_methods,
    check_step,
    class_name,
    load,
    prepare_out,
    select_layers,
)
from captum_shallowcam.experiments.images import (
    SAMPLE_IMAGES,
    LabelledImage,
    sample_images,
)

HELP = "explain your own photo (or a bundled one)"


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "explain",
        help=HELP,
        description="Explains one photo at chosen layers with chosen methods, prints the class "
        "explained and the deletion/insertion scores, and writes a figure.",
    )
    p.add_argument(
        "image",
        help="path of a JPEG or PNG photo, or a bundled photo: "
        + ", ".join(Path(f).stem for f in SAMPLE_IMAGES),
    )
    add_model_argument(p)
    add_layers_argument(p, "--layer")
    add_methods_argument(p, "--method", "layercam,shallowcam")
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    check_step(args.step)
    item = _photo(args.image)
    out = Path(args.out)
    check_figure_suffix(out)
    prepare_out(out, "figure")
    loaded = load(args.model)
    layers = select_layers(loaded, args.layer)
    check_layer_outputs(loaded, layers, loaded.preprocess(item.load()))
    methods = check_methods(loaded, layers, args.method)
    if args.target is not None:
        n_classes = len(loaded.categories)
        if not 0 <= args.target < n_classes:
            raise UsageError(
                f"--target {args.target} is not a class of {loaded.name}: give 0 to "
                f"{n_classes - 1} (e.g. {class_name(loaded, 282)}), or leave it out to "
                "explain the predicted class"
            )
        item = LabelledImage(item.path, args.target, item.name)
    maps._explain_and_score(
        loaded,
        [item],
        layers,
        methods,
        args.step,
        out,
        target_source="given by --target",
    )


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
