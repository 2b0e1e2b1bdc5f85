"""What the commands share: the usage error, the model and layer checks, the
common arguments.

A mistake in the arguments (unknown method, layer or class, a missing photo,
folder or weights file) is a :class:`UsageError`, reported before anything is
computed, in one line on stderr, with exit status 2.
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure

from captum_shallowcam.attr.presets import RULE_PRESETS
from captum_shallowcam.methods import make_explainer, method_names, methods_help
from captum_shallowcam.models import (
    available_models,
    default_layer_names,
    load_model,
    model_spec,
)

PROG = "python -m captum_shallowcam"

#: Fewer photos than this, and a bootstrap interval is too rough to trust.
MIN_PHOTOS_FOR_INTERVALS = 20

SCORE = "overall = 100 x (insertion AUC - deletion AUC), higher is better"


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors in one line too (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def load(name: str, normalization: str = "own"):
    """``load_model``, with a missing weights file reported as a usage error."""
    spec = model_spec(name)
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint())
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


def check_step(step: int | None) -> None:
    if step is not None and step <= 0:
        raise UsageError(f"--step must be a positive number of pixels, got {step}")
    if step is not None and step >= 2**63:
        raise UsageError(
            f"--step {step} does not fit in a 64-bit integer; a step of H x W pixels "
            "or more already perturbs the whole image at once"
        )


def check_methods(loaded, layers, text: str, rules: str | None = None) -> list[str]:
    """The method names, each checked by building its explainer (no computation)."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise UsageError(
            f"--method(s) is empty; choose from {', '.join(method_names())}"
        )
    for method in methods:
        try:
            make_explainer(loaded.model, list(layers.values()), method, rules)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return methods


def prepare_out(path: Path, what: str) -> None:
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
    try:  # writable now, not after the work
        if path.exists():
            with open(path, "a"):
                pass
        else:  # a file of its own: under torchrun every rank checks at once
            handle, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise UsageError(
            f"cannot write --out {path} ({error.strerror}); choose another --out"
        ) from None


def check_layer_outputs(loaded, layers, image: torch.Tensor) -> None:
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


def check_figure_suffix(path: Path) -> None:
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UsageError(
            f"--out {path}: matplotlib cannot write '{path.suffix}' figures; use .png, "
            ".pdf or .svg"
        )


def select_layers(loaded, names: str | None):
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
                f"'{module_path_example(loaded)}'"
            )
    return chosen


def module_path_example(loaded) -> str:
    first = next(iter(loaded.layers.values()))
    return next(n for n, m in loaded.model.named_modules() if m is first)


def class_name(loaded, index: int) -> str:
    return f"{index} '{loaded.categories[index]}'" if loaded.categories else str(index)


def parse_ranges(text: str) -> set:
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


def layers_help() -> str:
    return "; ".join(
        f"{m}: {', '.join(default_layer_names(m))}" for m in available_models()
    )


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``, one of the registered models."""
    parser.add_argument(
        "--model", default="efficientnet-lite0", choices=available_models(), metavar="MODEL",
        help=f"one of {', '.join(available_models())} (default: efficientnet-lite0)",
    )  # fmt: skip


def add_layers_argument(parser: argparse.ArgumentParser, flag: str) -> None:
    """``--layer`` or ``--layers``: names of the model's layers or module paths."""
    parser.add_argument(
        flag, default=None,
        help="comma-separated layer names, or module paths of the model (default: all of "
        f"the model's layers; {layers_help()})",
    )  # fmt: skip


def add_rules_argument(parser: argparse.ArgumentParser) -> None:
    """``--rules``: a rule preset for the relevance methods."""
    presets = "; ".join(f"{p.name}: {p.description}" for p in RULE_PRESETS.values())
    parser.add_argument(
        "--rules", default=None, choices=list(RULE_PRESETS), metavar="PRESET",
        help=f"LRP rule preset of the relevance methods ({presets}) (default: each "
        "method's own, z+)",
    )  # fmt: skip


def add_methods_argument(
    parser: argparse.ArgumentParser, flag: str, default: str
) -> None:
    """``--method`` or ``--methods``: names of the method registry."""
    parser.add_argument(
        flag, default=default,
        help=f"comma-separated methods (default: {default}); {methods_help()}",
    )  # fmt: skip


def add_start_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--start`` and ``--limit``: which photos of the folder a run takes."""
    parser.add_argument(
        "--start", type=int, default=0, help="skip the first N images (default: 0)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use N images after --start (default: all)",
    )


def add_sharded_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume``, ``--device`` and ``--dist-timeout`` of a run over shards."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a run: skip the (photo, layer, method) rows already in the "
        "shard files beside --out",
    )
    parser.add_argument(
        "--device", default=None,
        help="default: cuda:LOCAL_RANK if CUDA is available, else cpu",
    )  # fmt: skip
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds a rank waits for the others under torchrun before failing (default: 1800)",
    )
