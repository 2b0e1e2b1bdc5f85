"""Checks that the three methods and the metric run on a device and agree with the CPU.

For resnet18 (``weights=None``, seeded) and the pretrained EfficientNet-Lite0,
runs ``LayerCam``, ``LayerRelevanceCam``, ``LayerShallowCam`` (v1, v2, v3) and
``deletion_insertion`` on ``--device`` and on the CPU, and checks that

* every returned tensor (maps, convergence deltas, metric fields) is on the
  device, and
* it equals the CPU result within tolerance (maps: max difference at most
  ``--rtol`` times the CPU tensor's largest absolute value; for the metric,
  each of its fields likewise);
* the benchmark's device path: ``--protocol rise`` (RISE's zero-padded blur)
  equals the CPU, and the metric under ``--amp bf16`` (``autocast_dtype``)
  returns finite float32 results on the device; its mean |ΔAUC| against
  float32 is printed.

TF32 is turned off so that the GPU computes in true float32. Prints one
``PASS``/``FAIL`` line per check and a summary; the exit status is 1 when any
check fails. ``--device cpu`` runs the same checks CPU against CPU (a self-check
of the script, and of determinism).

Usage::

    PYTHONPATH=. python benchmarks/device_check.py                # cuda
    PYTHONPATH=. python benchmarks/device_check.py --device cpu   # self-check
"""

import argparse
import copy
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.metrics import deletion_insertion, protocol_kwargs

RESULTS: list[tuple[bool, str]] = []


def report(ok: bool, what: str) -> None:
    RESULTS.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)


def flatten(result: Any) -> list[Tensor]:
    """Every tensor in a (nested) method or metric result."""
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, (list, tuple)):
        return [t for item in result for t in flatten(item)]
    return []  # None entries (clrp deltas)


def models() -> dict[str, tuple[nn.Module, list[str], int]]:
    """name -> (model, names of the layers to explain, input size)."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    from captum_shallowcam.models import load_model

    lite = load_model("efficientnet-lite0")
    names = {module: name for name, module in lite.model.named_modules()}
    lite_layers = [names[lite.layers[s]] for s in ("stage2", "stage4", "stage6")]
    return {
        "resnet18": (resnet, ["layer1", "layer2", "layer3"], 112),
        "efficientnet-lite0": (lite.model, lite_layers, 224),
    }


def methods(model: nn.Module, layers: list[nn.Module]) -> dict[str, Callable]:
    return {
        "LayerCam": lambda x, t: LayerCam(model, layers).attribute(x, target=t),
        "LayerRelevanceCam": lambda x, t: LayerRelevanceCam(model, layers).attribute(
            x, target=t, return_convergence_delta=True
        ),
        "LayerShallowCam-v1": lambda x, t: LayerShallowCam(model, layers).attribute(
            x, target=t, variant="v1", return_convergence_delta=True
        ),
        "LayerShallowCam-v2": lambda x, t: LayerShallowCam(model, layers).attribute(
            x, target=t, variant="v2"
        ),
        "LayerShallowCam-v3": lambda x, t: LayerShallowCam(model, layers).attribute(
            x, target=t, variant="v3", initial_relevance="clrp"
        ),
    }


def compare(
    label: str, on_device: Any, on_cpu: Any, device: torch.device, rtol: float
) -> None:
    device_tensors, cpu_tensors = flatten(on_device), flatten(on_cpu)
    if len(device_tensors) != len(cpu_tensors) or not device_tensors:
        report(False, f"{label}: {len(device_tensors)} tensors vs {len(cpu_tensors)}")
        return
    where = [t.device for t in device_tensors if t.device.type != device.type]
    report(not where, f"{label}: all {len(device_tensors)} outputs on {device.type}")
    worst = 0.0
    finite = True
    for d, c in zip(device_tensors, cpu_tensors):
        d = d.detach().cpu().double()
        c = c.detach().double()
        finite &= bool(torch.isfinite(d).all())
        if d.shape != c.shape:
            report(False, f"{label}: shape {tuple(d.shape)} vs {tuple(c.shape)}")
            return
        scale = max(float(c.abs().max()), 1e-12)
        worst = max(worst, float((d - c).abs().max()) / scale)
    report(
        finite and worst <= rtol,
        f"{label}: equals the CPU result (max diff {worst:.2e} of the max, "
        f"tolerance {rtol:g})",
    )


def check_protocols_and_amp(
    model_name: str,
    cpu_model: nn.Module,
    device_model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: Tensor,
    device: torch.device,
    args: argparse.Namespace,
) -> None:
    """The benchmark's device path: RISE's blur (conv2d, zero padding) on the
    device equals the CPU, and ``autocast_dtype=torch.bfloat16`` (``--amp bf16``)
    keeps every output on the device, in float32, finite, with the mean |ΔAUC|
    against float32 printed (it may become the GPU default only if <= 0.002)."""
    kwargs = protocol_kwargs("rise", step=args.step)
    on_cpu = deletion_insertion(cpu_model, x, maps, target=target, **kwargs)
    on_device_args = (x.to(device), maps.to(device))
    kwargs.update(target=target.to(device), max_examples_per_batch=64)
    try:
        on_device = deletion_insertion(device_model, *on_device_args, **kwargs)
        amp = deletion_insertion(
            device_model, *on_device_args, autocast_dtype=torch.bfloat16, **kwargs
        )
    except Exception as error:  # noqa: BLE001 - reported as a failure
        report(
            False, f"{model_name} protocol rise / bf16: {type(error).__name__}: {error}"
        )
        return
    compare(
        f"{model_name} protocol rise",
        tuple(on_device),
        tuple(on_cpu),
        device,
        args.rtol,
    )
    tensors = flatten(tuple(amp))
    ok = all(t.device.type == device.type and t.dtype == torch.float32 for t in tensors)
    ok &= all(bool(torch.isfinite(t).all()) for t in tensors)
    delta = torch.cat(
        [
            (amp.deletion_auc - on_device.deletion_auc).abs(),
            (amp.insertion_auc - on_device.insertion_auc).abs(),
        ]
    )
    report(
        ok,
        f"{model_name} deletion_insertion bf16 autocast: float32 outputs on "
        f"{device.type}; mean |ΔAUC| vs float32 {float(delta.mean()):.5f} "
        f"(max {float(delta.max()):.5f}, {x.shape[0]} images)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--step", type=int, default=224 * 56)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("FAIL cuda requested but torch.cuda.is_available() is False")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    print(f"device {device}, torch {torch.__version__}", flush=True)

    for model_name, (model, layer_names, size) in models().items():
        start = time.perf_counter()
        torch.manual_seed(1)
        x = torch.randn(args.batch, 3, size, size)
        modules = dict(model.named_modules())
        cpu_model = model
        device_model = copy.deepcopy(model).to(device)
        device_modules = dict(device_model.named_modules())
        cpu_methods = methods(cpu_model, [modules[n] for n in layer_names])
        device_methods = methods(device_model, [device_modules[n] for n in layer_names])
        with torch.no_grad():
            target = cpu_model(x).argmax(1)
        maps_cpu = None
        for name in cpu_methods:
            on_cpu = cpu_methods[name](x, target)
            try:
                on_device = device_methods[name](x.to(device), target.to(device))
            except Exception as error:  # noqa: BLE001 - reported as a failure
                report(False, f"{model_name} {name}: {type(error).__name__}: {error}")
                continue
            compare(f"{model_name} {name}", on_device, on_cpu, device, args.rtol)
            if name == "LayerShallowCam-v1":
                maps_cpu = on_cpu[0][0]
        # The metric, with the same (CPU) attributions on both sides, so that the
        # pixel ranking is the same.
        if maps_cpu is not None:
            kwargs = dict(target=target, step=args.step, max_examples_per_batch=8)
            metric_cpu = deletion_insertion(cpu_model, x, maps_cpu, **kwargs)
            kwargs["target"] = target.to(device)
            try:
                metric_device = deletion_insertion(
                    device_model, x.to(device), maps_cpu.to(device), **kwargs
                )
            except Exception as error:  # noqa: BLE001
                report(False, f"{model_name} deletion_insertion: {error}")
            else:
                compare(
                    f"{model_name} deletion_insertion",
                    tuple(metric_device),
                    tuple(metric_cpu),
                    device,
                    args.rtol,
                )
            check_protocols_and_amp(
                model_name, cpu_model, device_model, x, maps_cpu, target, device, args
            )
        print(f"  ({model_name}: {time.perf_counter() - start:.1f} s)", flush=True)

    failed = [what for ok, what in RESULTS if not ok]
    print(
        f"{'PASS' if not failed else 'FAIL'}: {len(RESULTS) - len(failed)} of "
        f"{len(RESULTS)} checks passed on {device}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
