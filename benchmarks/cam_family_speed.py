"""Speed of the CAM family against pytorch-grad-cam and torchcam, in one process.

Every method of the family is timed side by side with the pytorch-grad-cam and
torchcam implementations of the same method, on the same inputs (the three bundled
photos repeated to a batch of 8, 224 x 224, EfficientNet-Lite0, explaining the predicted
classes) at stage2 and stage7, in ``--repeats`` rounds after one warm-up; each
round runs every implementation once (interleaved), and the median is reported
with the ratio ours / peer. The perturbation methods (hundreds to thousands of
forward passes per call) run ``--repeats-slow`` rounds (default 1) after a
warm-up on the first image only.

``--steady-allocator`` raises glibc's mmap and trim thresholds (as
``benchmarks/speed.py`` does): with the default allocator, large tensors are
mapped fresh from the operating system and page-faulted on first touch, and
whether a tensor gets a fresh mapping depends on the allocation history of
each implementation, which alone moved Score-CAM's ratio to pytorch-grad-cam
from about 1.3 to about 0.95 in this session's measurements. Each library runs with its own defaults (batch of
masked inputs: ours 32, pytorch-grad-cam 16 for Score-CAM and 32 for
Ablation-CAM, torchcam 32); the peers' time includes their resizing to the
input's size and min-max scaling, ours returns the layer-resolution map.
Group-CAM and Integrated Grad-CAM have no peer in either library; they are
timed against the authors' code as written in ``tests/_reference.py`` (one image
at a time, as the authors run it). A peer that raises is reported with its
error.

Score-CAM and Ablation-CAM run one forward pass per channel and image: 192 at
stage2 (24 channels) and 2,560 at stage7 (320 channels) per call.

Usage::

    python benchmarks/cam_family_speed.py --repeats 3 --repeats-slow 1 --steady-allocator
    # the stored run, time-boxed: stage7's Score-CAM and Ablation-CAM on 2 images
    python benchmarks/cam_family_speed.py --steady-allocator --stages stage2
    python benchmarks/cam_family_speed.py --steady-allocator --stages stage7 --append \
        --methods Grad-CAM++ XGrad-CAM Group-CAM "Integrated Grad-CAM"
    python benchmarks/cam_family_speed.py --steady-allocator --stages stage7 --append \
        --methods Score-CAM Ablation-CAM --batch 2
"""

import argparse
import contextlib
import copy as copy_module_
import importlib.util
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from captum_shallowcam import (
    LayerAblationCam,
    LayerGradCamPlusPlus,
    LayerGroupCam,
    LayerIntegratedGradCam,
    LayerScoreCam,
    LayerXGradCam,
)
from captum_shallowcam.experiments.images import sample_images
from captum_shallowcam.experiments.measure import steady_allocator
from captum_shallowcam.models import load_model

RESULTS = Path(__file__).parent / "results" / "cam_family_speed_cpu.txt"
#: The perturbation methods: --repeats-slow rounds, no separate warm-up.
SLOW = {"Score-CAM", "Ablation-CAM", "Group-CAM", "Integrated Grad-CAM"}


def pytorch_grad_cam(
    name: str,
) -> Callable[[nn.Module, nn.Module, Tensor, list[int]], object]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {
        "Grad-CAM++": pgc.GradCAMPlusPlus,
        "XGrad-CAM": pgc.XGradCAM,
        "Score-CAM": pgc.ScoreCAM,
        "Ablation-CAM": pgc.AblationCAM,
    }[name]

    def run(
        model: nn.Module, layer: nn.Module, x: Tensor, targets: list[int]
    ) -> object:
        # pytorch-grad-cam prints a tqdm bar per image for the perturbation methods
        with contextlib.redirect_stderr(io.StringIO()):
            with cls(model=model, target_layers=[layer]) as cam:
                out = cam(
                    input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]
                )
        model.zero_grad(set_to_none=True)  # its backward fills parameter .grad
        return out

    return run


def torchcam(name: str) -> Callable[[nn.Module, nn.Module, Tensor, list[int]], object]:
    import torchcam.methods as tcm

    cls = {
        "Grad-CAM++": tcm.GradCAMpp,
        "XGrad-CAM": tcm.XGradCAM,
        "Score-CAM": tcm.ScoreCAM,
    }[name]

    def run(
        model: nn.Module, layer: nn.Module, x: Tensor, targets: list[int]
    ) -> object:
        extractor = cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]))
        try:
            if name == "Score-CAM":
                with torch.no_grad():  # its documented use: no gradient needed
                    scores = model(x)
            else:
                scores = model(x)
            cams = extractor(class_idx=targets, scores=scores)
        finally:
            extractor.remove_hooks()
        model.zero_grad(set_to_none=True)
        return cams

    return run


def _tests_reference():
    """``tests/_reference.py`` (the authors' code, step by step), loaded from
    its file: it is the tests' module, not the package's or an importable one."""
    path = Path(__file__).resolve().parents[1] / "tests" / "_reference.py"
    spec = importlib.util.spec_from_file_location("_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def authors(name: str) -> Callable[[nn.Module, nn.Module, Tensor, list[int]], object]:
    ref = _tests_reference()

    def run(
        model: nn.Module, layer: nn.Module, x: Tensor, targets: list[int]
    ) -> object:
        if name == "Group-CAM":
            return [
                ref.group_cam_authors(model, layer, x[i : i + 1], c, 32)
                for i, c in enumerate(targets)
            ]
        return [
            ref.integrated_grad_cam_authors(model, layer, x[i : i + 1], c, 50)
            for i, c in enumerate(targets)
        ]

    return run


OURS = {
    "Grad-CAM++": LayerGradCamPlusPlus,
    "XGrad-CAM": LayerXGradCam,
    "Score-CAM": LayerScoreCam,
    "Ablation-CAM": LayerAblationCam,
    "Group-CAM": LayerGroupCam,
    "Integrated Grad-CAM": LayerIntegratedGradCam,
}
PEERS = {
    "Grad-CAM++": {"pytorch-grad-cam": pytorch_grad_cam, "torchcam": torchcam},
    "XGrad-CAM": {"pytorch-grad-cam": pytorch_grad_cam, "torchcam": torchcam},
    "Score-CAM": {"pytorch-grad-cam": pytorch_grad_cam, "torchcam": torchcam},
    "Ablation-CAM": {"pytorch-grad-cam": pytorch_grad_cam},
    "Group-CAM": {"authors' code": authors},
    "Integrated Grad-CAM": {"authors' code": authors},
}


def copy_module(model: nn.Module) -> nn.Module:
    return copy_module_.deepcopy(model)


def interleaved(
    functions: dict[str, Callable[[bool], object]], repeats: int, small_warm_up: bool
) -> dict[str, object]:
    """Median seconds per function (or the error it raised), after a warm-up
    (on the first image only when ``small_warm_up``); ``f(True)`` runs the
    warm-up input."""
    failed: dict[str, str] = {}
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_ in range(repeats + 1):
        for name in list(times):
            start = time.perf_counter()
            try:
                functions[name](round_ == 0 and small_warm_up)
            except Exception as error:  # noqa: BLE001 - a peer's failure is a result
                message = str(error).splitlines()[0][:120]
                failed[name] = f"{type(error).__name__}: {message}"
                del times[name]
                continue
            if round_ > 0:
                times[name].append(time.perf_counter() - start)
    return {**{n: statistics.median(t) for n, t in times.items()}, **failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-slow", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stages", nargs="+", default=["stage2", "stage7"])
    parser.add_argument("--methods", nargs="+", default=list(OURS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--steady-allocator", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--append", action="store_true", help="add to --output instead of replacing it"
    )
    args = parser.parse_args()
    allocator = steady_allocator() if args.steady_allocator else "default allocator"
    torch.set_num_threads(args.threads)
    lm = load_model("efficientnet-lite0")
    model = lm.model
    photos = sample_images()  # three photos, repeated to a batch of 8
    x = torch.stack(
        [lm.preprocess(photos[i % len(photos)].load()) for i in range(args.batch)]
    )
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()
    lines = [
        f"# CAM family speed, CPU ({args.threads} threads, load average "
        f"{os.getloadavg()[0]:.2f} at start), EfficientNet-Lite0, batch {x.shape[0]}, "
        f"224x224, predicted classes, {allocator}; median of {args.repeats} rounds "
        f"after one warm-up ({args.repeats_slow} round(s) after a one-image warm-up "
        f"for {', '.join(sorted(SLOW))}); implementations interleaved in each round.",
        f"# torch {torch.__version__}; ratio = ours / peer (goal: <= 1 against the "
        "fastest peer).",
    ]
    previous = args.output.read_text() if args.append and args.output.exists() else ""
    for stage in args.stages:
        layer = lm.layers[stage]
        layer_name = {m: n for n, m in model.named_modules()}[layer]
        for method in args.methods:
            functions = {
                "ours": lambda small, m=method, layer=layer: OURS[m](
                    model, layer
                ).attribute(
                    x[:1] if small else x, target=targets[:1] if small else targets
                )
            }
            for peer, make in PEERS[method].items():
                # each peer gets its own copy: pytorch-grad-cam's AblationCAM
                # swaps the layer for its own module and, when it raises, does
                # not put it back
                copy = copy_module(model)
                copy_layer = copy.get_submodule(layer_name)
                run = make(method)
                functions[peer] = lambda small, run=run, m=copy, layer=copy_layer: run(
                    m, layer, x[:1] if small else x, targets[:1] if small else targets
                )
            slow = method in SLOW
            repeats = args.repeats_slow if slow else args.repeats
            start = time.perf_counter()
            result = interleaved(functions, repeats, small_warm_up=slow)
            line = f"{stage:7s} {method:20s} ours {result['ours']:8.3f} s"
            for peer in PEERS[method]:
                value = result[peer]
                if isinstance(value, float):
                    line += (
                        f" | {peer} {value:8.3f} s, ratio {result['ours'] / value:5.2f}"
                    )
                else:
                    line += f" | {peer} failed ({value})"
            line += f"  [{repeats} rounds, {time.perf_counter() - start:.0f} s]"
            print(line, flush=True)
            lines.append(line)
            # written as it goes, after what was there with --append
            args.output.write_text(previous + "\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
