"""Speed of LayerShallowCam against LayerCam and the naive Captum composition.

All timings in one process, on the same inputs (batch 8, 224 x 224), in
``--repeats`` rounds after one warm-up; each round runs every function once.
Printed as ratios, the median of the per-round ratios (with their range):

* LayerShallowCam / LayerCam at the same layer, shallow and deep (goal <= 2.0);
* LayerShallowCam at all default layers in one call / one LayerCam call at the
  shallowest layer (goal <= 3.0);
* LayerShallowCam / (Captum LayerLRP + Captum LayerGradCam, separate calls) at
  the same layer (goal < 1);
* for comparison, LayerShallowCam with ``ZPlusRule(conserve=False)`` (no
  fall-back for outputs without a positive contribution) / LayerCam at the
  shallow layer (no goal).

With ``--steady-allocator`` (Linux, glibc) large tensors are taken from the
heap instead of being mapped fresh from the operating system on every
allocation. On this CPU a fresh mapping costs page faults on first touch, and
whether a tensor gets one depends on the allocator's history, so timings
switch between two levels from run to run; with the option every function
runs in the faster, steady one (and both methods get about 1.4x faster).

Usage::

    python benchmarks/speed.py --model vgg16 --model efficientnet-lite0
    python benchmarks/speed.py --model efficientnet-lite0 --steady-allocator
"""

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch
from captum.attr import LayerGradCam, LayerLRP
from torch import nn

from captum_shallowcam import LayerCam, LayerShallowCam, ZPlusRule
from captum_shallowcam.experiments.measure import steady_allocator
from captum_shallowcam.models import load_model


def _interleaved_times(
    functions: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    for f in functions.values():  # warm-up
        f()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return times


def _ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    """Median of the per-round ratios a/b (each round runs both back to back,
    so a slow drift of the machine's load cancels), with their range."""
    ratios = sorted(x / y for x, y in zip(times[a], times[b]))
    return (
        f"{statistics.median(ratios):5.2f}x  (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})"
    )


def _naive(model, layer, x, target) -> Callable[[], object]:
    lrp, grad_cam = LayerLRP(model, layer), LayerGradCam(model, layer)

    def run():
        lrp.attribute(x, target=target)
        grad_cam.attribute(x, target=target)

    return run


def run(model_name: str, batch: int, repeats: int, allocator: str) -> None:
    torch.manual_seed(0)
    loaded = load_model(model_name, pretrained=model_name == "efficientnet-lite0")
    model, layers = loaded.model, loaded.layers
    names = list(layers)
    shallow, deep = names[0], names[-1]
    x = torch.randn(batch, 3, 224, 224)
    target = 1
    functions: dict[str, Callable[[], object]] = {}
    for name in (shallow, deep):
        layer_cam, shallow_cam = (
            LayerCam(model, layers[name]),
            LayerShallowCam(model, layers[name]),
        )
        functions[f"layercam@{name}"] = partial(layer_cam.attribute, x, target=target)
        functions[f"shallowcam@{name}"] = partial(
            shallow_cam.attribute, x, target=target
        )
    every = LayerShallowCam(model, list(layers.values()))
    functions["shallowcam@all"] = lambda: every.attribute(x, target=target)
    # The z+ rule without its conserving fall-back, for comparison (not a goal).
    rule = ZPlusRule(conserve=False)
    unconserved = LayerShallowCam(
        model, layers[shallow], rules={nn.Conv2d: rule, nn.Linear: rule}
    )
    functions[f"no-conserve@{shallow}"] = partial(
        unconserved.attribute, x, target=target, check_conservation=False
    )
    naive_error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _naive(model, layers[shallow], x[:1], target)()
        functions[f"naive@{shallow}"] = _naive(model, layers[shallow], x, target)
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        naive_error = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = _interleaved_times(functions, repeats)
    print(
        f"\n## {model_name} (batch {batch}, 224x224, median of {repeats} rounds, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
        f"{allocator})"
    )
    for name, seconds in t.items():
        print(f"  {name:<24} {statistics.median(seconds):8.3f} s")
    for name in (shallow, deep):
        ratio = _ratio(t, f"shallowcam@{name}", f"layercam@{name}")
        print(f"  ShallowCam / LayerCam at {name:<10} {ratio}  goal <= 2.0")
    ratio = _ratio(t, "shallowcam@all", f"layercam@{shallow}")
    print(
        f"  ShallowCam at all {len(names)} layers / LayerCam at {shallow}: {ratio}  goal <= 3.0"
    )
    ratio = _ratio(t, f"no-conserve@{shallow}", f"layercam@{shallow}")
    print(
        f"  ShallowCam, ZPlusRule(conserve=False) / LayerCam at {shallow}: {ratio}  (no goal)"
    )
    if naive_error is None:
        ratio = _ratio(t, f"shallowcam@{shallow}", f"naive@{shallow}")
        print(
            f"  ShallowCam / (Captum LayerLRP + LayerGradCam) at {shallow}: {ratio}  goal < 1"
        )
    else:
        print(f"  naive Captum composition not possible on this model: {naive_error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        choices=["vgg16", "efficientnet-lite0", "resnet50", "vgg16_bn"],
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--steady-allocator", action="store_true",
        help="reuse freed heap memory instead of fresh mappings (glibc; see above)",
    )  # fmt: skip
    args = parser.parse_args()
    allocator = steady_allocator() if args.steady_allocator else "default allocator"
    for name in args.model or ["vgg16", "efficientnet-lite0"]:
        run(name, args.batch, args.repeats, allocator)


if __name__ == "__main__":
    main()
