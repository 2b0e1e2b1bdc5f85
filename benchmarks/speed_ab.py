"""LayerShallowCam / LayerCam of this tree against another commit, in one process.

``benchmarks/speed.py`` runs one version per process, and on a small shared
CPU two processes of the same code differ by a few percent (allocator history,
memory layout), as much as the changes being judged. This script extracts the
other commit's package (``git archive``) under the name
``captum_shallowcam_<tag>``, loads both versions into one process, and times
them interleaved on the same model and inputs (batch 8, 224 x 224, target 1,
the steady allocator of ``speed.py``). Printed: the median times, each
version's ShallowCam/LayerCam ratio, and this tree over the other commit for
each method (the medians of the per-round ratios).

Usage (from the repository root)::

    python benchmarks/speed_ab.py --base b38764f --layer stage1 --repeats 12

``--mask`` times this tree's LayerShallowCam with another mask (an option
against the base commit's default).
"""

import argparse
import importlib
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

import captum_shallowcam
from captum_shallowcam.experiments.measure import steady_allocator
from captum_shallowcam.models import load_model


def _other_version(rev: str, where: Path):
    """The package as of ``rev``, importable as ``captum_shallowcam_<tag>``."""
    tag = "".join(c for c in rev if c.isalnum())[:12]
    name = f"captum_shallowcam_{tag}"
    archive = subprocess.run(
        ["git", "archive", rev, "captum_shallowcam"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    package = where / name
    (where / "captum_shallowcam").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bcaptum_shallowcam\b", name, path.read_text()))
    sys.path.insert(0, str(where))
    return importlib.import_module(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other commit")
    parser.add_argument("--layer", default="stage1")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument(
        "--mask",
        default=None,
        help="this tree's LayerShallowCam mask (default: its default); the base "
        "commit's runs its default",
    )
    args = parser.parse_args()
    options = {} if args.mask is None else {"mask": args.mask}
    steady_allocator()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        other = _other_version(args.base, Path(tmp))
        torch.manual_seed(0)
        loaded = load_model("efficientnet-lite0")
        model, layer = loaded.model, loaded.layers[args.layer]
        x = torch.randn(8, 3, 224, 224)
        functions = {
            "this.shallowcam": captum_shallowcam.LayerShallowCam(model, layer),
            "this.layercam": captum_shallowcam.LayerCam(model, layer),
            "base.shallowcam": other.LayerShallowCam(model, layer),
            "base.layercam": other.LayerCam(model, layer),
        }
        kwargs = {name: {} for name in functions} | {"this.shallowcam": options}
        for _ in range(2):  # warm-up
            for name, explainer in functions.items():
                explainer.attribute(x, target=1, **kwargs[name])
        times: dict[str, list[float]] = {name: [] for name in functions}
        for _ in range(args.repeats):
            for name, explainer in functions.items():
                start = time.perf_counter()
                explainer.attribute(x, target=1, **kwargs[name])
                times[name].append(time.perf_counter() - start)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print(
        f"efficientnet-lite0 at {args.layer}, batch 8, {args.repeats} interleaved "
        f"rounds, {torch.get_num_threads()} threads, steady allocator; base {args.base}"
        + (f"; this tree's mask={args.mask!r}" if args.mask else "")
    )
    for name, seconds in times.items():
        print(f"  {name:<16} {statistics.median(seconds):.4f} s")
    for version in ("this", "base"):
        print(
            f"  {version}: ShallowCam / LayerCam "
            f"{ratio(f'{version}.shallowcam', f'{version}.layercam'):.3f}x"
        )
    for method in ("shallowcam", "layercam"):
        print(
            f"  {method}: this / base {ratio(f'this.{method}', f'base.{method}'):.3f}"
        )


if __name__ == "__main__":
    main()
