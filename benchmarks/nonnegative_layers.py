"""Deletion/insertion on EfficientNet-Lite0 layers whose activations are non-negative.

The paper's setting (VGG16's ReLU outputs) has ``A >= 0``. In EfficientNet-Lite0
the stage outputs are signed (linear bottlenecks), but inside each block the
depthwise conv's ReLU6 output, the input of the projection conv, is not. This
script explains, at the last block of each stage, that ReLU6 output
(``_blocks[j]._project_conv`` with ``attribute_to_layer_input=True``) with
LayerCam, LayerShallowCam's default, and the 0.1 default
(``channel_weights="positive"``); on these layers the sign-aware mask equals
the plain one, so only the channel weights differ. Writes the benchmark's JSON.

Usage::

    python benchmarks/nonnegative_layers.py --images ../shared/data/imagenet-samples-b \\
        --limit 12 --step 3584 --out nonnegative_b.json
"""

import argparse
import json
import time

import torch

from captum_shallowcam import LayerCam, LayerShallowCam
from captum_shallowcam.experiments import EvaluationResult, image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.experiments.results import PROTOCOL_BEFORE_PRESETS as PROTOCOL
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--step", type=int, default=3584)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    loaded = load_model("efficientnet-lite0")
    model = loaded.model.to(memory_format=torch.channels_last)
    layers = {
        f"{name}-relu6": block._project_conv for name, block in loaded.layers.items()
    }
    names = list(layers)
    modules = list(layers.values())
    explainers = {
        "layercam": lambda x, t: LayerCam(model, modules).attribute(
            x, target=t, attribute_to_layer_input=True
        ),
        "shallowcam": lambda x, t: LayerShallowCam(model, modules).attribute(
            x, target=t, attribute_to_layer_input=True
        ),
        "shallowcam-v1+clrp+positive": lambda x, t: LayerShallowCam(
            model, modules
        ).attribute(
            x, target=t, attribute_to_layer_input=True, channel_weights="positive"
        ),
    }
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    result = EvaluationResult(
        settings={
            "model": "efficientnet-lite0",
            "images": args.images,
            "start": args.start,
            "n_images": len(items),
            "protocol": PROTOCOL,
            "step": args.step,
            "layers": names,
            "note": "inputs of each stage's last projection conv (ReLU6 outputs, A >= 0)",
        }
    )
    for method in explainers:
        result.scores[method] = {
            n: {"deletion": [], "insertion": [], "overall": []} for n in names
        }
    started = time.time()
    for image_names, inputs, targets in image_batches(
        items, loaded.preprocess, model, args.batch_size
    ):
        result.images.extend(image_names)
        result.targets.extend(int(t) for t in targets)
        for method, explain in explainers.items():
            for name, layer_map in zip(names, explain(inputs, targets)):
                scores = deletion_insertion(
                    model, inputs, layer_map.detach(), target=targets, step=args.step
                )
                result.add_scores(method, name, scores)
        with open(args.out, "w") as f:
            json.dump(result.to_dict(), f)
        print(
            f"{len(result.images)}/{len(items)} images, {time.time() - started:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
