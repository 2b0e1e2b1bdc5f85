"""The ``sanity`` command (issue 23): the sanity checks over a folder of
photos, with the benchmark's shards, ``--resume`` and torchrun."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_shallowcam.cli import main
from captum_shallowcam.experiments.images import read_image_folder, sample_images
from captum_shallowcam.experiments.ranks import RankInfo
from captum_shallowcam.experiments.sanity import (
    method_explain,
    plot_cascading,
    run_sanity,
)
from captum_shallowcam.experiments.sharding import shard_paths
from captum_shallowcam.metrics import (
    class_sensitivity,
    model_randomization,
    randomization_steps,
)
from captum_shallowcam.models import LoadedModel

REPO = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):  # noqa: ANN001, ANN201
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(h.mean((2, 3)))


def preprocess(image) -> torch.Tensor:  # noqa: ANN001
    small = image.convert("RGB").resize((10, 10))
    pixels = torch.tensor(list(small.getdata()), dtype=torch.float32) / 255
    return pixels.T.reshape(3, 10, 10) - 0.5


def tiny_loaded(name: str = "tiny", **kwargs) -> LoadedModel:
    torch.manual_seed(0)
    model = TinyNet().eval()
    return LoadedModel(
        name="efficientnet-lite0", model=model, preprocess=preprocess,
        unnormalize=lambda x: x + 0.5,
        layers={"early": model.relu1, "late": model.relu2},
        categories=[f"class {i}" for i in range(5)],
    )  # fmt: skip


@pytest.fixture
def tiny_cli(monkeypatch):
    import captum_shallowcam.cli._common as common

    monkeypatch.setattr(common, "load_model", tiny_loaded)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The bundled photos and two more copies under other names: five, labelled
    with classes of the tiny model."""
    folder = tmp_path_factory.mktemp("photos")
    rows = ["file,class_index"]
    for i, item in enumerate(sample_images() + sample_images()[:2]):
        name = f"{i}_{item.path.name}"
        shutil.copy(item.path, folder / name)
        rows.append(f"{name},{i % 5}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


RUN = ["sanity", "--layers", "early,late", "--methods", "layercam,shallowcam",
       "--granularity", "module", "--batch-size", "2"]  # fmt: skip


def assert_values(written: list, want: torch.Tensor) -> None:
    """JSON values (null for NaN) equal to the metric's."""
    got = torch.tensor(
        json.loads(json.dumps(written).replace("null", "NaN")), dtype=torch.float64
    )
    torch.testing.assert_close(got, want, equal_nan=True)


@pytest.mark.filterwarnings("ignore:.*constant map:RuntimeWarning")
def test_the_command_writes_the_metrics_values(tiny_cli, photos, tmp_path, capsys):
    out = tmp_path / "s.json"
    main([*RUN, "--images", str(photos), "--out", str(out)])
    result = json.loads(out.read_text())
    items = read_image_folder(photos)
    model = tiny_loaded().model
    inputs = torch.stack([preprocess(item.load()) for item in items])
    assert result["images"] == [item.name for item in items]
    assert result["targets"] == model(inputs).argmax(1).tolist()
    assert result["steps"] == randomization_steps(model, inputs[:1])
    assert result["steps"] == ["fc", "conv2", "conv1"]
    settings = result["settings"]
    assert settings["order"] == "cascading" and settings["other"] == ["second", "last"]
    for method in ("layercam", "shallowcam"):
        explain = method_explain(method, ["relu1", "relu2"])
        for batch in (slice(0, 2), slice(2, 4), slice(4, 5)):
            x = inputs[batch]
            randomized = model_randomization(model, explain, x, modules=None, seed=0)
            last = class_sensitivity(model, explain, x, other="last")
            for layer, want, want_last in zip(("early", "late"), randomized, last):
                got = result["scores"][method][layer]
                assert_values(got["spearman"][batch], want.spearman.T)
                assert_values(got["ssim"][batch], want.ssim.T)
                assert_values(got["class_sensitivity_last"][batch], want_last)
    printed = capsys.readouterr().out
    assert "| late | shallowcam |" in printed and out.with_suffix(".png").is_file()


@pytest.mark.filterwarnings("ignore:.*constant map:RuntimeWarning")
def test_whole_granularity_is_one_step_that_randomizes_every_module(
    tiny_cli, photos, tmp_path
):
    """--granularity whole: only the cascade's end point, every module with
    parameters reset at once, equal to the metric given that one group."""
    out = tmp_path / "s.json"
    run = [a if a != "module" else "whole" for a in RUN]
    main([*run, "--other", "none", "--images", str(photos), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["steps"] == ["conv1+relu1+conv2+relu2+fc"]
    items = read_image_folder(photos)
    model = tiny_loaded().model
    inputs = torch.stack([preprocess(item.load()) for item in items])
    explain = method_explain("shallowcam", ["relu1", "relu2"])
    randomized = model_randomization(
        model, explain, inputs[:2], modules=[["conv1", "conv2", "fc"]], seed=0
    )
    for layer, want in zip(("early", "late"), randomized):
        assert_values(
            result["scores"]["shallowcam"][layer]["spearman"][:2], want.spearman.T
        )


@pytest.mark.filterwarnings("ignore:.*constant map:RuntimeWarning")
def test_resume_refuses_changed_settings_naming_them(
    tiny_cli, photos, tmp_path, capsys
):
    out = tmp_path / "s.json"
    args = [*RUN, "--images", str(photos), "--limit", "2", "--methods", "layercam"]
    main([*args, "--out", str(out)])
    first = json.loads(out.read_text())
    capsys.readouterr()
    for change, setting in [
        (["--order", "independent"], "order"),
        (["--seed", "1"], "seed"),
        (["--other", "second"], "other"),
        (["--granularity", "none"], "granularity"),
    ]:
        with pytest.raises(SystemExit) as refused:
            main([*args, *change, "--resume", "--out", str(out)])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert "Cannot resume" in err and f"with {setting} = " in err, err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out)])  # shards there, no --resume
    assert "Pass --resume" in capsys.readouterr().err
    main([*args, "--resume", "--out", str(out)])  # nothing left to do
    assert json.loads(out.read_text())["scores"] == first["scores"]


def test_block_granularity_on_another_model_is_refused(
    tiny_cli, photos, tmp_path, capsys
):
    with pytest.raises(SystemExit):
        main(["sanity", "--images", str(photos), "--layers", "late",
              "--out", str(tmp_path / "s.json")])  # fmt: skip
    assert "use --granularity module" in capsys.readouterr().err


def _tiny_sanity(out: Path, items, rank=(0, 1), resume=False, order="cascading"):
    loaded = tiny_loaded()
    info = RankInfo(rank[0], rank[1], 0, torch.device("cpu"), 60.0)
    return run_sanity(
        loaded.model, items, preprocess, {"early": "relu1", "late": "relu2"},
        ["layercam", "shallowcam"], out, {"model": "tiny", "images": "photos"},
        order=order, granularity="module", batch_size=2, resume=resume, info=info,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:.*constant map:RuntimeWarning")
@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_two_shards_equal_one_process(photos, tmp_path, order):
    """Shards written rank by rank (world of 2, no process group) merge into
    exactly the values of one process."""
    items = read_image_folder(photos)
    one = _tiny_sanity(tmp_path / "one" / "s.json", items, order=order)
    for rank in range(2):
        two = _tiny_sanity(
            tmp_path / "two" / "s.json", items, (rank, 2), resume=rank > 0, order=order
        )
    assert len(shard_paths(tmp_path / "two" / "s.json")) == 2
    assert two["images"] == one["images"] and two["scores"] == one["scores"]
    assert two["settings"]["world_size"] == 2
    plot_cascading(two, tmp_path / "two.png")


def _run(args) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_torchrun_two_ranks_equal_one_process_on_lite0(photos, tmp_path):
    """The documented command under torchrun (class sensitivity only, so that
    it runs in seconds on EfficientNet-Lite0)."""
    run = ["sanity", "--images", str(photos), "--layers", "stage7", "--methods",
           "layercam", "--granularity", "none", "--batch-size", "1", "--limit", "3"]  # fmt: skip
    one, two = tmp_path / "one" / "s.json", tmp_path / "two" / "s.json"
    done = _run([sys.executable, "-m", "captum_shallowcam", *run, "--out", str(one)])
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "-m", "--", "captum_shallowcam", *run, "--out", str(two)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["images"] == a["images"] and b["scores"] == a["scores"]
    assert b["settings"]["world_size"] == 2 and len(shard_paths(two)) == 2


@pytest.mark.filterwarnings("ignore:.*constant map:RuntimeWarning")
def test_report_merges_sanity_shards_into_the_same_result(photos, tmp_path, capsys):
    items = read_image_folder(photos)
    one = _tiny_sanity(tmp_path / "one" / "s.json", items)
    for rank in range(2):
        _tiny_sanity(tmp_path / "two" / "s.json", items, (rank, 2), resume=rank > 0)
    merged = tmp_path / "merged" / "report.json"
    main(["report", str(tmp_path / "two"), "--out", str(merged)])
    result = json.loads(merged.read_text())
    assert result["images"] == one["images"] and result["scores"] == one["scores"]
    assert "| late | shallowcam |" in capsys.readouterr().out
    assert merged.with_suffix(".png").is_file()
