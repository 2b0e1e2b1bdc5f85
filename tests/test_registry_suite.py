"""Cross-cutting checks driven by the method registry.

Every method registered in :mod:`captum_shallowcam.methods` is run through the
same contract, so a new method (one file plus one registry line) is checked by
every test here without editing any of them:

* maps are N x 1 x h x w per layer, finite, and a list for a list of layers;
* the model is exactly as it was after a call and after a call that raised;
* a batch gives the maps of its examples one by one;
* ``target=None`` explains the predicted class;
* threads explaining their own copies of a model get the maps of sequential
  calls (one model is explained from one thread at a time; see
  docs/robustness.rst);
* a class index out of range and an input of the wrong rank are refused with
  a message that names the problem.

Captum's own ``LayerGradCam`` (``gradcam``) is reused as it is, so the checks
where Captum behaves otherwise are run on the package's own methods only: in
train mode it runs the model's forward as it is (BatchNorm statistics move), and
its errors are Captum's.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from models import bn_residual_net
from torch import nn

from captum_shallowcam.methods import METHODS, make_explainer

NAMES = list(METHODS)
#: The package's own classes (Captum's LayerGradCam keeps Captum's behaviour).
OWN = [n for n in NAMES if METHODS[n].method.__module__.startswith("captum_shallowcam")]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def inputs(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modules": [
            (
                name,
                sorted(m.__dict__),
                m.training,
                {a: list(getattr(m, a)) for a in _HOOK_DICTS if hasattr(m, a)},
            )
            for name, m in model.named_modules(remove_duplicate=False)
        ],
        "grads": [p.grad is None for p in model.parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert after["modules"] == before["modules"]
    assert after["grads"] == before["grads"], "a parameter .grad was filled"
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_maps_have_the_layers_shape(name):
    model = bn_residual_net()
    maps = make_explainer(model, [model.relu1, model.relu2], name)(
        inputs(), torch.tensor([0, 3, 4])
    )
    assert isinstance(maps, list) and len(maps) == 2
    for m in maps:
        assert m.shape == (3, 1, 32, 32)
        assert torch.isfinite(m).all()
        assert not m.requires_grad


@pytest.mark.parametrize("name", OWN)
def test_model_unchanged_after_a_call_and_after_a_failing_call(name):
    model = bn_residual_net()
    before = snapshot(model)
    make_explainer(model, [model.relu1], name)(inputs(), torch.tensor([0, 1, 2]))
    assert_same(before, snapshot(model))
    explain = make_explainer(model, [model.conv2], name)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do here
        explain(torch.randn(3, 4, 32, 32), torch.tensor([0, 1, 2]))  # 4 channels
    assert_same(before, snapshot(model))
    model.train()
    before = snapshot(model)
    make_explainer(model, [model.relu1], name)(inputs(), torch.tensor([0, 1, 2]))
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_gives_the_maps_of_its_examples(name):
    model = bn_residual_net()
    x, t = inputs(3), torch.tensor([4, 1, 2])
    explain = make_explainer(model, [model.relu2], name)
    (batched,) = explain(x, t)
    for i in range(3):
        (single,) = explain(x[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(single, batched[i : i + 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", OWN)
def test_target_none_explains_the_predicted_class(name):
    model = bn_residual_net()
    x = inputs(3)
    predicted = model(x).argmax(1)
    explain = make_explainer(model, [model.relu2], name)
    (by_none,) = explain(x, None)
    (by_class,) = explain(x, predicted)
    torch.testing.assert_close(by_none, by_class)


@pytest.mark.parametrize("name", OWN)
def test_threads_with_their_own_model_copies(name):
    jobs = [(inputs(2, seed), torch.tensor([seed % 5, 1])) for seed in range(4)]
    expected = [
        make_explainer(model, [model.relu1, model.relu2], name)(*job)
        for model, job in ((bn_residual_net(), job) for job in jobs)
    ]
    # Built before the threads start: the global RNG is shared between threads.
    models = [copy.deepcopy(bn_residual_net()) for _ in jobs]
    got: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            model = models[i]
            got[i] = make_explainer(model, [model.relu1, model.relu2], name)(*jobs[i])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for i, maps in enumerate(expected):
        for a, b in zip(got[i], maps):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", OWN)
def test_a_class_out_of_range_is_refused(name):
    model = bn_residual_net()
    explain = make_explainer(model, [model.relu2], name)
    with pytest.raises(ValueError, match="target"):
        explain(inputs(2), torch.tensor([0, 5]))


@pytest.mark.parametrize("name", OWN)
def test_an_input_of_the_wrong_rank_is_refused(name):
    model = bn_residual_net()
    explain = make_explainer(model, [model.relu2], name)
    with pytest.raises((ValueError, TypeError), match="input|shape"):
        explain(torch.randn(3, 32, 32), torch.tensor([0, 1, 2]))
