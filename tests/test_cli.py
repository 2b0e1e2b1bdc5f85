"""The command line, the image readers and the experiment's statistics."""

import json
import shutil

import numpy as np
import pytest
import torch

from captum_shallowcam import LayerCam, LayerShallowCam, ZPlusRule
from captum_shallowcam.cli import main
from captum_shallowcam.experiments import (
    EvaluationResult,
    markdown_table,
    merge_results,
    paired_difference,
    summary_rows,
)
from captum_shallowcam.experiments.images import (
    SAMPLE_IMAGES,
    LabelledImage,
    read_image_folder,
    sample_images,
)
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.models import available_models, default_layer_names, load_model


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
    with pytest.raises(ValueError, match="Unknown method 'smoothcam'"):
        make_explainer(model, [model[0]], "smoothcam")
    with pytest.raises(ValueError, match=r"Unknown option '\+sharp'"):
        make_explainer(model, [model[0]], "shallowcam-v1+sharp")
    with pytest.raises(ValueError, match=r"takes only the options \+sign-aware"):
        make_explainer(model, [model[0]], "layercam+positive")
    with pytest.raises(ValueError, match="takes no options"):
        make_explainer(model, [model[0]], "gradcam+sign-aware")
    with pytest.raises(ValueError, match="has no mask"):
        make_explainer(model, [model[0]], "relevancecam+sign-aware")


@pytest.mark.parametrize("base", ["layercam", "shallowcam"])
def test_sign_aware_option_is_relu_activations(base):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()  # fmt: skip
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    cls = {"layercam": LayerCam, "shallowcam": LayerShallowCam}[base]
    for option, flag in (("+sign-aware", True), ("+plain-mask", False)):
        (got,) = make_explainer(model, [model[0]], base + option)(x, t)
        expected = cls(model, model[0]).attribute(x, target=t, relu_activations=flag)
        torch.testing.assert_close(got, expected)


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
        model[2].bias.fill_(
            0.5
        )  # the depthwise conv's outputs stay alive on bias alone
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
    assert "Caution: from 2 images (fewer than 20)" in printed
    assert "Caution: from 2 images" in out.with_suffix(".md").read_text()


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
    printed = capsys.readouterr().out
    assert "coffee_cup  967 'espresso' (the prediction, p = 0.88)" in printed
    assert "overall = 100 x (insertion AUC - deletion AUC), higher is better" in printed
    assert "step 50176 pixels (2 points per curve)" in printed
    header, row = [
        line for line in printed.splitlines() if "shallowcam" in line or "photo" in line
    ][-2:]
    assert header.split() == ["photo", "method", "stage7"] and len(row.split()) == 3


def test_explain_says_which_class_it_explained(tmp_path, capsys, no_computation):
    """A given target is named as such, with the prediction beside it; a bundled
    photo explained for its prediction names its label (the demo's class)."""
    calls = []
    no_computation._explain_and_score = lambda *args, **kwargs: calls.append(
        (args, kwargs)
    )
    main(
        [
            "explain",
            "rocket_launch",
            "--target",
            "657",
            "--out",
            str(tmp_path / "a.png"),
        ]
    )
    (loaded, items, *_), kwargs = calls[-1]
    assert items[0].target == 657 and items[0].name == "rocket_launch"
    assert kwargs["target_source"] == "given by --target"


def test_class_lines_name_prediction_label_and_given_target(
    efficientnet_lite0, tmp_path, capsys, monkeypatch
):
    import captum_shallowcam.cli.maps as cli

    monkeypatch.setattr(
        cli, "make_explainer", lambda *a: lambda x, t: [torch.rand(len(x), 1, 7, 7)]
    )
    rocket = [i for i in sample_images() if i.path.stem == "rocket_launch"][0]
    predicted = LabelledImage(rocket.path, None, "x")
    given = LabelledImage(rocket.path, 657, "x")
    layers = {"stage7": efficientnet_lite0.layers["stage7"]}
    for item in (predicted, given):
        cli._explain_and_score(
            efficientnet_lite0,
            [item],
            layers,
            ["layercam"],
            50176,
            tmp_path / "f.png",
            "given by --target",
        )
    printed = capsys.readouterr().out
    assert (
        "rocket_launch  540 'drilling platform' (the prediction, p = 0.25; its label is 657 'missile': --target 657)"
        in printed
    )
    assert (
        "rocket_launch  657 'missile' (given by --target, p = 0.11; predicted: 540 'drilling platform')"
        in printed
    )


def test_demo_writes_into_its_output_folder(tmp_path, no_computation):
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        return {"shallowcam": [[50.0, 40.0, 30.0]], "layercam": [[45.0, 42.0, 31.0]]}

    no_computation._explain_and_score = record
    main(["demo", "--out", str(tmp_path / "demo")])
    assert calls[-1][5] == tmp_path / "demo" / "layer_maps.png"
    assert [i.path.stem for i in calls[-1][1]] == [
        "chelsea_cat",
        "coffee_cup",
        "rocket_launch",
    ]
    assert (tmp_path / "demo").is_dir()


def test_demo_says_what_three_photos_can_show(capsys, tmp_path, no_computation):
    """The demo's photos cannot rank the methods, and its summary says so and
    points to the evidence."""
    no_computation._explain_and_score = lambda *args, **kwargs: {
        "shallowcam": [[50.0, 40.0, 30.0], [20.0, 21.0, 22.0]],
        "layercam": [[45.0, 42.0, 31.0], [25.0, 20.0, 22.5]],
    }
    main(["demo", "--out", str(tmp_path / "demo")])
    out = " ".join(capsys.readouterr().out.split())
    assert "shallowcam is ahead of layercam in 2 of 6 (photo, layer) pairs" in out
    assert "differences from -5.0 to +5.0 points" in out
    assert "cannot rank two methods" in out and "200 photos" in out
    assert "docs/results.rst" in out


@pytest.fixture
def no_computation(monkeypatch, efficientnet_lite0):
    """The CLI with the model loaded once and every computation forbidden: a
    user error must be reported before any map or score is computed."""
    import captum_shallowcam.cli._common as common
    import captum_shallowcam.cli.maps as cli
    import captum_shallowcam.experiments.sharding as distributed

    def forbidden(*args, **kwargs):
        raise AssertionError("computed before the user error was reported")

    monkeypatch.setattr(common, "load_model", lambda name, **kw: efficientnet_lite0)
    monkeypatch.setattr(cli, "_explain_and_score", forbidden)
    monkeypatch.setattr(distributed, "run_benchmark", forbidden)
    monkeypatch.setattr(cli, "deletion_insertion", forbidden)
    return cli


def _user_error(capsys, argv):
    """Runs the CLI; returns its one line on stderr after checking exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


CAT = str(sample_images()[0].path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explain", CAT, "--layer", "stage9"], "Unknown layer 'stage9' of efficientnet-lite0: choose from stage1, "),
        (["explain", CAT, "--method", "layercam,smoothcam"], "Unknown method 'smoothcam'; choose from layercam, "),
        (["explain", CAT, "--method", "shallowcam+sharp"], "Unknown option '+sharp'"),
        (["explain", CAT, "--target", "1000"], "--target 1000 is not a class of efficientnet-lite0: give 0 to 999"),
        (["explain", CAT, "--target", "-1"], "--target -1 is not a class"),
        (["explain", "no_such_photo.jpg"], "no photo at no_such_photo.jpg; give the path of a JPEG or PNG file, "
         "or a bundled photo: chelsea_cat, coffee_cup, rocket_launch"),
        (["explain", CAT, "--step", "0"], "--step must be a positive number of pixels"),
        (["explain", CAT, "--out", "figure.xyz"], "matplotlib cannot write '.xyz' figures"),
        (["explain", CAT, "--model", "alexnet"], "argument --model: invalid choice: 'alexnet'"),
        (["demo", "--step", "-5"], "--step must be a positive number"),
        (["benchmark", "--images", "no_such_folder"], "--images: Image folder no_such_folder does not exist."),
        (["report", "no_such_results.json"], "no results file no_such_results.json"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_exit_2_before_any_computation(
    no_computation, capsys, monkeypatch, tmp_path, argv, message
):
    monkeypatch.chdir(tmp_path)
    assert message in _user_error(capsys, argv)


def test_explain_output_folder_is_created_and_unwritable_one_refused(
    no_computation, capsys, tmp_path
):
    computed = []
    no_computation._explain_and_score = lambda *args, **kwargs: computed.append(
        args[-1]
    )
    out = tmp_path / "new" / "folder" / "map.png"
    main(["explain", CAT, "--layer", "stage7", "--out", str(out)])
    assert out.parent.is_dir() and computed
    (tmp_path / "file").write_text("")
    err = _user_error(
        capsys, ["explain", CAT, "--out", str(tmp_path / "file" / "map.png")]
    )
    assert "cannot create the folder" in err and "choose another --out" in err


def test_missing_torchvision_weights_error_says_what_the_cli_can_do(
    no_computation, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    err = _user_error(capsys, ["explain", CAT, "--model", "resnet50"])
    assert "no ImageNet weights for resnet50: expected " in err
    assert "--model efficientnet-lite0" in err
    assert "pretrained=False" not in err  # the CLI cannot pass it


def test_benchmark_refuses_bad_labels_and_classes_before_computing(
    no_computation, capsys, tmp_path
):
    folder = _cub_folder(tmp_path / "cub")
    err = _user_error(
        capsys, ["benchmark", "--images", str(folder), "--classes", "7-x"]
    )
    assert "--classes '7-x': '7-x' is not a class index or range" in err
    err = _user_error(
        capsys, ["benchmark", "--images", str(folder), "--methods", "layercam,nope"]
    )
    assert "Unknown method 'nope'" in err
    err = _user_error(
        capsys, ["benchmark", "--images", str(folder), "--classes", "500"]
    )
    assert "no images left to evaluate" in err
    (folder / "images" / "002.Cup" / "cup_2.jpg").unlink()
    err = _user_error(capsys, ["benchmark", "--images", str(folder)])
    assert "cup_2.jpg not found" in err


def test_help_lists_commands_defaults_and_valid_names(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("demo", "explain", "benchmark", "report"):
        assert f"\n    {command}" in top
    assert "``" not in top and ":mod:" not in top  # plain text, no Sphinx markup
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the protocol's; 224, the paper's, is one row)" in text
    assert "names: layercam, gradcam, relevancecam, shallowcam, shallowcam-v1" in text
    assert (
        "efficientnet-lite0: stage1, stage2, stage3, stage4, stage5, stage6, stage7"
        in text
    )
    assert "resnet50: layer1, layer2, layer3, layer4" in text


def test_default_layer_names_are_those_of_the_loaded_models():
    for name in available_models():
        assert default_layer_names(name) == list(
            load_model(name, pretrained=False).layers
        )


def _result(images, methods, offset=0.0, step=100):
    n = len(images)
    scores = {
        m: {
            "a": {
                "deletion": [0.1] * n,
                "insertion": [0.5 + offset] * n,
                "overall": [40.0 + 100 * offset] * n,
            }
        }
        for m in methods
    }
    settings = {
        "layers": ["a"],
        "step": step,
        "model": "m",
        "protocol": "p",
        "images": "d",
    }
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
    main(
        [
            "report",
            *map(str, paths),
            "--classes",
            "1",
            "--out",
            str(tmp_path / "rep.json"),
        ]
    )
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
