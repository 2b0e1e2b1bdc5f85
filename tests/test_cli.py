"""The command line, the image readers and the experiment's statistics."""

import json
import shutil

import numpy as np
import pytest
import torch

from captum_shallowcam import LayerShallowCam, ZPlusRule
from captum_shallowcam.__main__ import main
from captum_shallowcam.evaluation import (
    EvaluationResult,
    make_explainer,
    markdown_table,
    merge_results,
    paired_difference,
    summary_rows,
)
from captum_shallowcam.images import SAMPLE_IMAGES, read_image_folder, sample_images


def _cub_folder(root):
    """A tiny CUB-200-2011-shaped folder built from the bundled photos."""
    (root / "images" / "001.Cat").mkdir(parents=True)
    (root / "images" / "002.Cup").mkdir(parents=True)
    photos = sample_images()
    shutil.copy(photos[0].path, root / "images" / "001.Cat" / "cat_1.jpg")
    shutil.copy(photos[1].path, root / "images" / "002.Cup" / "cup_1.jpg")
    shutil.copy(photos[2].path, root / "images" / "002.Cup" / "cup_2.jpg")
    (root / "images.txt").write_text(
        "1 001.Cat/cat_1.jpg\n2 002.Cup/cup_1.jpg\n3 002.Cup/cup_2.jpg\n"
    )
    (root / "image_class_labels.txt").write_text("1 1\n2 2\n3 2\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
    return root


def test_cub_layout_reads_test_split_with_zero_based_labels(tmp_path):
    items = read_image_folder(_cub_folder(tmp_path))
    assert [i.path.name for i in items] == ["cat_1.jpg", "cup_2.jpg"]
    assert [i.target for i in items] == [0, 1]
    assert len(read_image_folder(tmp_path, split="all")) == 3
    assert [i.target for i in read_image_folder(tmp_path, split="train")] == [1]


def test_flat_folder_with_labels_csv(tmp_path):
    for item in sample_images():
        shutil.copy(item.path, tmp_path / item.path.name)
    (tmp_path / "labels.csv").write_text(
        "file,class_index,name\ncoffee_cup.jpg,967,espresso\nchelsea_cat.jpg,282,cat\n"
    )
    items = read_image_folder(tmp_path)
    assert [(i.path.name, i.target) for i in items] == [
        ("chelsea_cat.jpg", 282),
        ("coffee_cup.jpg", 967),
    ]
    (tmp_path / "labels.csv").unlink()
    unlabelled = read_image_folder(tmp_path)
    assert len(unlabelled) == 3 and all(i.target is None for i in unlabelled)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="No images"):
        read_image_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\nx,1\n")
    with pytest.raises(ValueError, match="'file' and 'class_index'"):
        read_image_folder(tmp_path)


def test_sample_images_are_classified_as_labelled(efficientnet_lite0):
    lm = efficientnet_lite0
    x = torch.stack([lm.preprocess(i.load()) for i in sample_images()])
    with torch.no_grad():
        top5 = lm.model(x).topk(5, dim=1).indices
    for row, item in zip(top5.tolist(), sample_images()):
        assert item.target in row, item.name
    assert set(SAMPLE_IMAGES) == {i.path.name for i in sample_images()}


def test_paired_difference_matches_hand_computation():
    values, baseline = [3.0, 5.0, 4.0, 8.0], [1.0, 2.0, 4.0, 4.0]
    mean, se, low, high = paired_difference(values, baseline, resamples=4000)
    diff = np.array([2.0, 3.0, 0.0, 4.0])
    assert mean == pytest.approx(2.25)
    assert se == pytest.approx(diff.std(ddof=1) / 2)
    assert 0.0 <= low < mean < high <= 4.0


def test_summary_and_table_report_paired_differences():
    result = EvaluationResult(
        settings={"layers": ["a"]}, images=["x", "y"], targets=[0, 1]
    )
    result.scores = {
        "layercam": {
            "a": {
                "deletion": [0.2, 0.4],
                "insertion": [0.6, 0.8],
                "overall": [40.0, 40.0],
            }
        },
        "shallowcam": {
            "a": {
                "deletion": [0.1, 0.3],
                "insertion": [0.7, 0.8],
                "overall": [60.0, 50.0],
            }
        },
    }
    rows = summary_rows(result)
    assert rows[0]["overall"] == pytest.approx(40.0) and "diff" not in rows[0]
    assert rows[1]["diff"] == pytest.approx(15.0)
    assert rows[1]["deletion"] == pytest.approx(0.2)
    table = markdown_table(rows)
    assert "| a | shallowcam | 2 | 0.2000 | 0.7500 | 55.00 | +15.00 [" in table


def test_unknown_method_names_are_refused():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    with pytest.raises(ValueError, match="Unknown method 'scorecam'"):
        make_explainer(model, [model[0]], "scorecam")
    with pytest.raises(ValueError, match=r"Unknown option '\+sharp'"):
        make_explainer(model, [model[0]], "shallowcam-v1+sharp")
    with pytest.raises(ValueError, match="takes no options"):
        make_explainer(model, [model[0]], "layercam+positive")


def test_no_conserve_option_drops_the_relevance_of_dead_outputs():
    """``+no-conserve`` gives the method ZPlusRule(conserve=False) for its convs
    and linear layers: on a net where a ReLU zeroes whole windows (dead outputs
    in the conv above) relevance is lost, so the maps differ from the default's
    and equal those of the method built with that rule by hand."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[0].bias.fill_(-0.6)  # many zero activations after the first ReLU
        model[2].bias.fill_(0.5)  # the depthwise conv's outputs stay alive on bias alone
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([0, 2])
    fast = make_explainer(model, [model[1]], "shallowcam+no-conserve")(x, target)[0]
    default = make_explainer(model, [model[1]], "shallowcam")(x, target)[0]
    rule = ZPlusRule(conserve=False)
    by_hand = LayerShallowCam(
        model, model[1], rules={torch.nn.Conv2d: rule, torch.nn.Linear: rule}
    ).attribute(x, target=target, check_conservation=False)
    torch.testing.assert_close(fast, by_hand)
    assert not torch.allclose(fast, default)
    _, delta = LayerShallowCam(
        model, model[1], rules={torch.nn.Conv2d: rule, torch.nn.Linear: rule}
    ).attribute(
        x, target=target, check_conservation=False, return_convergence_delta=True,
        initial_relevance="target",
    )  # fmt: skip
    assert float(delta.abs().max()) > 1e-3  # relevance was dropped


def test_benchmark_command_on_cub_layout(tmp_path, capsys):
    folder = _cub_folder(tmp_path / "cub")
    out = tmp_path / "out" / "results.json"
    main(
        [
            "benchmark", "--images", str(folder), "--layers", "stage6,stage7",
            "--methods", "layercam,shallowcam", "--step", "25088", "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["images"] == ["cat_1", "cup_2"] and result["targets"] == [0, 1]
    scores = result["scores"]["shallowcam"]["stage7"]
    assert len(scores["overall"]) == 2
    for d, i, o in zip(scores["deletion"], scores["insertion"], scores["overall"]):
        assert o == pytest.approx(100 * (i - d), abs=1e-3)
    assert out.with_suffix(".png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| stage7 | shallowcam | 2 |" in printed and "step 25088" in printed


def test_explain_command_writes_figure(tmp_path, capsys):
    image = sample_images()[1].path
    out = tmp_path / "explained.png"
    main(
        [
            "explain",
            str(image),
            "--layer",
            "stage7",
            "--method",
            "shallowcam",
            "--step",
            "50176",
            "--out",
            str(out),
        ]
    )
    assert out.stat().st_size > 0
    assert "coffee_cup" in capsys.readouterr().out


def test_explain_command_names_unknown_layer(tmp_path):
    with pytest.raises(SystemExit, match="Unknown layer 'stage9'"):
        main(["explain", str(sample_images()[0].path), "--layer", "stage9"])


def _result(images, methods, offset=0.0, step=100):
    n = len(images)
    scores = {
        m: {"a": {"deletion": [0.1] * n, "insertion": [0.5 + offset] * n, "overall": [40.0 + 100 * offset] * n}}
        for m in methods
    }
    settings = {"layers": ["a"], "step": step, "model": "m", "protocol": "p", "images": "d"}
    return EvaluationResult(settings, list(images), list(range(n)), scores)


def test_merge_joins_images_and_methods_and_refuses_other_settings(tmp_path, capsys):
    dev = _result(["x", "y"], ["layercam", "shallowcam"])
    extra_methods = _result(["x", "y"], ["gradcam"], offset=-0.1)
    more_images = _result(["z"], ["layercam", "shallowcam", "gradcam"])
    merged = merge_results([dev, extra_methods, more_images])
    assert merged.images == ["x", "y", "z"]
    assert set(merged.scores) == {"layercam", "shallowcam", "gradcam"}
    assert merged.scores["gradcam"]["a"]["overall"] == pytest.approx([30.0, 30.0, 40.0])
    partial = merge_results([dev, more_images, _result(["w"], ["layercam"])])
    assert set(partial.scores) == {"layercam"}  # the others miss image w
    with pytest.raises(ValueError, match="different step"):
        merge_results([dev, _result(["z"], ["layercam"], step=7)])
    paths = []
    for i, r in enumerate((dev, extra_methods)):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(r.to_dict()))
    main(["report", *map(str, paths), "--classes", "1", "--out", str(tmp_path / "rep.json")])
    assert json.loads((tmp_path / "rep.json").read_text())["images"] == ["y"]
    assert "| a | gradcam | 1 |" in capsys.readouterr().out


def test_benchmark_channels_last_gives_the_same_scores(tmp_path):
    folder = _cub_folder(tmp_path / "cub")
    scores = {}
    for flag in ([], ["--channels-last"]):
        out = tmp_path / f"out{len(flag)}" / "results.json"
        main(
            [
                "benchmark", "--images", str(folder), "--layers", "stage7",
                "--methods", "shallowcam", "--step", "25088", "--out", str(out), *flag,
            ]
        )  # fmt: skip
        result = json.loads(out.read_text())
        assert result["settings"]["channels_last"] is bool(flag)
        scores[bool(flag)] = result["scores"]["shallowcam"]["stage7"]
    for kind in ("deletion", "insertion", "overall"):
        assert scores[True][kind] == pytest.approx(scores[False][kind], abs=1e-3)
