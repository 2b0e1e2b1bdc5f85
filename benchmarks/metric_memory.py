"""Peak memory of ``deletion_insertion`` as the number of images grows.

Each image count runs in a fresh subprocess, which reports its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) at four points:

1. after the model is loaded (the baseline);
2. after the N input images and their N x 1 x 7 x 7 maps are allocated;
3. after a warm-up forward pass of one batch of ``max_examples_per_batch``
   images (so the model's own activations for a batch are in the peak);
4. after ``deletion_insertion`` has run with that ``max_examples_per_batch``.

The table shows the peak above the baseline (4 - 1), the size of the inputs
themselves, and the metric's own peak above everything that was already there
(4 - 3). The metric scores its perturbed images in chunks of at most
``max_examples_per_batch``, so if its memory is bounded by that, (4 - 3) stays
flat as N grows; a column that grows with N means per-image buffers of the
whole batch.

Usage::

    PYTHONPATH=. python benchmarks/metric_memory.py
    PYTHONPATH=. python benchmarks/metric_memory.py --model small --sizes 8 32 128 512
    PYTHONPATH=. python benchmarks/metric_memory.py --model small --substrates constant
"""

import argparse
import json
import os
import subprocess
import sys
import time

from captum_shallowcam.experiments.measure import peak_mib

SIZE = 224


def load(name: str):
    import torch
    from torch import nn

    if name == "efficientnet-lite0":
        from captum_shallowcam.models import load_model

        return load_model("efficientnet-lite0").model.eval()
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from captum_shallowcam.metrics import deletion_insertion

    model = load(args.model)
    baseline = peak_mib()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.child, 3, SIZE, SIZE, generator=generator)
    maps = torch.rand(args.child, 1, 7, 7, generator=generator)
    with_inputs = peak_mib()
    with torch.no_grad():
        warm = inputs[: args.batch]
        if warm.shape[0] < args.batch:
            warm = warm.repeat(args.batch // warm.shape[0] + 1, 1, 1, 1)[: args.batch]
        model(warm)
        del warm
    warmed = peak_mib()
    start = time.perf_counter()
    substrates = {}
    if args.substrates == "constant":
        # Broadcast (no per-image copy): isolates the default substrates' cost.
        substrates = {
            "deletion_substrate": torch.zeros(3, 1, 1),
            "insertion_substrate": torch.zeros(3, 1, 1),
        }
    result = deletion_insertion(
        model,
        inputs,
        maps,
        step=args.step,
        max_examples_per_batch=args.batch,
        **substrates,
    )
    seconds = time.perf_counter() - start
    after = peak_mib()
    print(
        json.dumps(
            {
                "n": args.child,
                "baseline": baseline,
                "with_inputs": with_inputs,
                "warmed": warmed,
                "after": after,
                "inputs_mib": inputs.numel() * inputs.element_size() / 2**20,
                "seconds": seconds,
                "points": result.deletion_curve.shape[1],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", choices=["efficientnet-lite0", "small"], default="efficientnet-lite0"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--step", type=int, default=12544)
    parser.add_argument("--batch", type=int, default=16, help="max_examples_per_batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--substrates",
        choices=["default", "constant"],
        default="default",
        help="default: zeros and the Gaussian blur of the inputs; constant: "
        "zero colours broadcast to the inputs (no per-image substrate buffers)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return

    rows = []
    for n in args.sizes:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            str(n),
            "--model",
            args.model,
            "--step",
            str(args.step),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--substrates",
            args.substrates,
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  N={n} done in {rows[-1]['seconds']:.1f} s", file=sys.stderr)

    print(
        f"deletion_insertion peak RSS, model {args.model}, {SIZE}x{SIZE} inputs, "
        f"step {args.step} ({rows[0]['points']} curve points), "
        f"max_examples_per_batch {args.batch}, {args.substrates} substrates, "
        f"{args.threads} threads"
    )
    header = (
        f"{'N':>5} {'baseline':>9} {'peak-base':>10} {'inputs':>8} "
        f"{'metric own':>11} {'own/img':>8} {'time s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        own = r["after"] - r["warmed"]
        print(
            f"{r['n']:>5} {r['baseline']:>9.0f} {r['after'] - r['baseline']:>10.0f} "
            f"{r['inputs_mib']:>8.0f} {own:>11.0f} {own / r['n']:>8.2f} "
            f"{r['seconds']:>7.1f}"
        )
    print(
        "MiB. baseline: peak after model load; peak-base: peak after the metric "
        "minus baseline; inputs: the N images themselves; metric own: peak after "
        "the metric minus peak after inputs + a warm-up forward of one batch."
    )


if __name__ == "__main__":
    main()
