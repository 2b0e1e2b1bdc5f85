"""Peak memory of LayerShallowCam and LayerRelevanceCam against LayerCam.

Peak resident memory only grows within a process, so each method runs in a
fresh subprocess, which loads the model, runs one no-grad forward pass of the
batch (the baseline: weights, inputs and the model's activations), then one
``attribute`` call, and reports its peak resident set size
(``ru_maxrss``) above the baseline. Printed: MiB above the baseline and the
ratio to LayerCam's.

Usage::

    PYTHONPATH=. python benchmarks/engine_memory.py
    PYTHONPATH=. python benchmarks/engine_memory.py --model vgg16 --layer pool1
"""

import argparse
import json
import subprocess
import sys

from captum_shallowcam.experiments.measure import peak_mib

METHODS = ("layercam", "shallowcam", "relevancecam")


def child(args: argparse.Namespace) -> None:
    import torch

    from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
    from captum_shallowcam.models import load_model

    torch.manual_seed(0)
    loaded = load_model(args.model, pretrained=args.model == "efficientnet-lite0")
    layer = loaded.layers[args.layer]
    x = torch.randn(args.batch, 3, 224, 224)
    with torch.no_grad():
        loaded.model(x)
    baseline = peak_mib()
    method = {
        "layercam": LayerCam,
        "shallowcam": LayerShallowCam,
        "relevancecam": LayerRelevanceCam,
    }[args.child]
    method(loaded.model, layer).attribute(x, target=1)
    print(
        json.dumps({"method": args.child, "above_baseline_mib": peak_mib() - baseline})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--layer", default="stage1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    peaks = {}
    for method in METHODS:
        command = [sys.executable, __file__, "--child", method, "--model", args.model,
                   "--layer", args.layer, "--batch", str(args.batch)]  # fmt: skip
        output = subprocess.run(
            command, check=True, capture_output=True, text=True
        ).stdout
        peaks[method] = json.loads(output.strip().splitlines()[-1])[
            "above_baseline_mib"
        ]
    print(f"## {args.model} at {args.layer} (batch {args.batch}, 224x224): peak resident "
          "memory above a no-grad forward pass")  # fmt: skip
    for method, mib in peaks.items():
        ratio = mib / peaks["layercam"]
        print(f"  {method:<14} {mib:8.0f} MiB  {ratio:5.2f}x LayerCam")


if __name__ == "__main__":
    main()
