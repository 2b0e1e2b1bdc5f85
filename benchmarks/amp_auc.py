"""Effect of ``--amp bf16`` on deletion/insertion AUCs: mean |ΔAUC| against float32.

For ``--images`` photos of a labelled folder, computes LayerCam maps at
``--layer`` of the pretrained EfficientNet-Lite0 in float32 once, then scores
them with ``deletion_insertion`` twice: in float32, and with
``autocast_dtype=torch.bfloat16`` (the metric's forwards only). Prints the
mean and max |ΔAUC| for deletion and insertion, the mean |Δoverall| in
points, and the time of each pass. ``--amp bf16`` may become the GPU default
only if the mean |ΔAUC| is at most 0.002.

Usage::

    PYTHONPATH=. python benchmarks/amp_auc.py --images 20 --step 3584          # CPU
    PYTHONPATH=. python benchmarks/amp_auc.py --images 100 --step 224 --device cuda
"""

import argparse
import time

import torch

from captum_shallowcam import LayerCam
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default="../shared/data/imagenet-samples")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--step", type=int, default=3584)
    parser.add_argument("--layer", default="stage5")
    parser.add_argument("--batch", type=int, default=4, help="photos per call")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded = load_model("efficientnet-lite0")
    model = loaded.model.to(device)
    items = read_image_folder(args.folder)[: args.images]
    explainer = LayerCam(model, loaded.layers[args.layer])
    deltas = {"deletion": [], "insertion": [], "overall": []}
    times = {"float32": 0.0, "bf16": 0.0}
    for lo in range(0, len(items), args.batch):
        chunk = items[lo : lo + args.batch]
        x = torch.stack([loaded.preprocess(i.load()) for i in chunk]).to(device)
        target = torch.tensor([i.target for i in chunk], device=device)
        maps = explainer.attribute(x, target=target)
        results = {}
        for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
            start = time.perf_counter()
            results[name] = deletion_insertion(
                model, x, maps, target=target, step=args.step, autocast_dtype=dtype
            )
            times[name] += time.perf_counter() - start
        full, amp = results["float32"], results["bf16"]
        deltas["deletion"] += (amp.deletion_auc - full.deletion_auc).abs().tolist()
        deltas["insertion"] += (amp.insertion_auc - full.insertion_auc).abs().tolist()
        deltas["overall"] += (amp.overall - full.overall).abs().tolist()
    n = len(deltas["deletion"])
    print(
        f"efficientnet-lite0, LayerCam at {args.layer}, {n} photos, step {args.step}, "
        f"device {device}, threads {torch.get_num_threads()}"
    )
    for kind in ("deletion", "insertion"):
        values = torch.tensor(deltas[kind])
        print(f"|ΔAUC| {kind:9}: mean {values.mean():.5f}, max {values.max():.5f}")
    both = torch.tensor(deltas["deletion"] + deltas["insertion"])
    print(f"|ΔAUC| both     : mean {both.mean():.5f} (target for a default: <= 0.002)")
    print(f"|Δoverall|      : mean {torch.tensor(deltas['overall']).mean():.3f} points")
    print(f"time: float32 {times['float32']:.1f} s, bf16 {times['bf16']:.1f} s")


if __name__ == "__main__":
    main()
