"""Issue 22 (round 3), the command line: damaged photos, layers that give no
feature map, out-of-range numbers, unwritable outputs, devices and damaged
results are one line on stderr (exit status 2) before any work."""

import json
from pathlib import Path

import pytest
import torch
from test_cli import CAT, _cub_folder, _user_error, no_computation  # noqa: F401

from captum_shallowcam.cli import main


def truncated_copy(path, to):
    data = Path(path).read_bytes()
    to.write_bytes(data[: len(data) // 2])
    return to


@pytest.mark.usefixtures("no_computation")
def test_explain_refuses_a_truncated_jpeg(capsys, tmp_path):
    photo = truncated_copy(CAT, tmp_path / "cut.jpg")
    err = _user_error(capsys, ["explain", str(photo), "--out", str(tmp_path / "m.png")])
    assert f"cannot read {photo} as an image" in err and "truncated" in err


@pytest.mark.usefixtures("no_computation")
def test_benchmark_refuses_a_truncated_photo_before_work(capsys, tmp_path):
    folder = _cub_folder(tmp_path / "cub")
    photo = folder / "images" / "002.Cup" / "cup_2.jpg"
    truncated_copy(photo, photo)
    err = _user_error(
        capsys,
        ["benchmark", "--images", str(folder), "--out", str(tmp_path / "r.json")],
    )
    assert f"cannot read photo {photo}" in err and "truncated" in err


@pytest.mark.parametrize(
    "layer, message",
    [
        ("_fc", "layer '_fc' gives (1, 1000), not a feature map N x K x h x w"),
        ("_dropout", "layer '_dropout' gives (1, 1280), not a feature map"),
        ("_swish", "layer '_swish' is called 2 times in one forward pass"),
    ],
)
@pytest.mark.usefixtures("no_computation")
def test_explain_refuses_a_layer_without_a_feature_map(
    capsys, tmp_path, layer, message
):
    err = _user_error(
        capsys, ["explain", CAT, "--layer", layer, "--out", str(tmp_path / "m.png")]
    )
    assert message in err


@pytest.mark.usefixtures("no_computation")
def test_a_step_beyond_int64_is_one_line(capsys, tmp_path):
    err = _user_error(
        capsys,
        ["explain", CAT, "--step", str(10**20), "--out", str(tmp_path / "m.png")],
    )
    assert "--step 100000000000000000000 does not fit in a 64-bit integer" in err


@pytest.mark.usefixtures("no_computation")
def test_a_benchmark_step_beyond_int64_leaves_no_file(capsys, tmp_path):
    out = tmp_path / "out" / "r.json"
    err = _user_error(
        capsys,
        ["benchmark", "--images", str(_cub_folder(tmp_path / "cub")),
         "--step", str(10**20), "--out", str(out)],
    )  # fmt: skip
    assert "does not fit in a 64-bit integer" in err
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_a_benchmark_step_beyond_the_image_scores_the_whole_image_at_once(
    tmp_path, monkeypatch, efficientnet_lite0
):
    """A step of more pixels than the image has (224 x 224 = 50176) perturbs
    them all in one step: the scores of step 50176, one shard file, and a
    resume of the same run that finds nothing left to do."""
    import captum_shallowcam.cli._common as common

    monkeypatch.setattr(common, "load_model", lambda name, **kw: efficientnet_lite0)
    folder = _cub_folder(tmp_path / "cub")
    run = ["benchmark", "--images", str(folder), "--limit", "1",
           "--layers", "stage7", "--methods", "layercam"]  # fmt: skip
    huge, whole = tmp_path / "huge" / "r.json", tmp_path / "whole" / "r.json"
    main([*run, "--step", str(10**15), "--out", str(huge)])
    main([*run, "--step", "50176", "--out", str(whole)])
    scores = json.loads(huge.read_text())["scores"]
    assert scores == json.loads(whole.read_text())["scores"]
    assert sorted(p.name for p in huge.parent.glob("*.jsonl")) == ["r.shard-0.jsonl"]
    main([*run, "--step", str(10**15), "--resume", "--out", str(huge)])
    assert json.loads(huge.read_text())["scores"] == scores


@pytest.mark.usefixtures("no_computation")
def test_an_unwritable_out_is_refused_before_work(capsys):
    err = _user_error(
        capsys, ["explain", CAT, "--layer", "stage7", "--out", "/proc/map.png"]
    )
    assert "cannot write --out /proc/map.png" in err and "choose another --out" in err


@pytest.mark.usefixtures("no_computation")
def test_a_writable_out_is_left_as_it_was(tmp_path, monkeypatch):
    import captum_shallowcam.cli.maps as cli

    computed = []
    monkeypatch.setattr(cli, "_explain_and_score", lambda *a, **k: computed.append(a))
    out = tmp_path / "map.png"
    main(["explain", CAT, "--layer", "stage7", "--out", str(out)])
    assert computed and not out.exists()  # the write check leaves no empty file


def test_ranks_checking_one_out_at_once_do_not_trip_over_each_other(tmp_path):
    """Under torchrun every rank checks --out at the same moment (CI once saw a
    rank fail to remove the empty file another rank had already removed)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from captum_shallowcam.cli._common import prepare_out

    out = tmp_path / "results.json"
    barrier = Barrier(8)

    def check(_):
        barrier.wait()
        for _ in range(25):
            prepare_out(out, "results")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, range(8)))  # re-raises the first error, if any
    assert list(tmp_path.iterdir()) == []  # neither the file nor a probe is left


@pytest.mark.parametrize(
    "device, message",
    [
        ("foo", "--device 'foo' is not a device; give cpu, cuda or cuda:N"),
        ("cuda", "--device cuda: no CUDA GPU is available here; use --device cpu"),
    ],
)
@pytest.mark.usefixtures("no_computation")
def test_benchmark_refuses_a_device_it_cannot_use(capsys, tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    folder = _cub_folder(tmp_path / "cub")
    err = _user_error(
        capsys,
        [
            "benchmark",
            "--images",
            str(folder),
            "--device",
            device,
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert message in err


def _result(**changes):
    result = {
        "settings": {
            "model": "m",
            "images": "i",
            "step": 64,
            "layers": ["a"],
            "protocol": "p",
        },
        "images": ["x.jpg", "y.jpg"],
        "targets": [0, 1],
        "scores": {
            "layercam": {
                "a": {
                    "deletion": [0.2, 0.3],
                    "insertion": [0.6, 0.8],
                    "overall": [40.0, 50.0],
                }
            }
        },
    }
    result.update(changes)
    return result


SETTINGS = json.dumps(
    {
        "settings": {
            "model": "m",
            "images": "i",
            "step": 64,
            "layers": ["a"],
            "methods": ["layercam"],
            "protocol": "p",
        }
    }
)
ROW = {
    "index": 0,
    "image": "x.jpg",
    "target": 0,
    "layer": "a",
    "method": "layercam",
    "deletion": 0.1,
    "insertion": 0.5,
    "overall": 40.0,
}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jsonl", "", "No settings line"),
        ("corrupt.jsonl", SETTINGS + "\n{not json\n" + json.dumps(ROW) + "\n", "is not shard files written by benchmark (JSONDecodeError"),
        ("no_image.jsonl", SETTINGS + "\n" + json.dumps({k: v for k, v in ROW.items() if k != "image"}) + "\n", "(KeyError: 'image')"),
        ("binary.json", b"\xff\xfe\x00garbage", "is not a JSON file written by benchmark"),
        ("no_layers.json", json.dumps(_result(settings={"model": "m", "step": 64})), "its settings name no layers"),
        ("short.json", json.dumps(_result(scores={"layercam": {"a": {"deletion": [0.2], "insertion": [0.6, 0.8], "overall": [40.0, 50.0]}}})), "layercam at a has 1 deletion scores for 2 images"),
        ("no_scores.json", json.dumps(_result(scores={})), "it holds no scores"),
        ("missing.jsonl", None, "no shard file"),
    ],
)  # fmt: skip
def test_report_on_damaged_input_is_one_line(capsys, tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    err = _user_error(
        capsys, ["report", str(path), "--out", str(tmp_path / "out" / "r.json")]
    )
    assert message in err
    assert not (tmp_path / "out" / "r.md").exists()
