"""Explaining from several threads.

The overlaps are constructed deterministically: the models contain a
:class:`Checkpoint` module whose forward blocks on a barrier or an event, so a
second thread's call is known to start while the first is inside the forward
pass (no sleeps, no timing luck).
"""

import copy
import threading
import unittest
from collections.abc import Callable
from typing import Any

import pytest
import torch
from captum.testing.helpers.basic import assertTensorAlmostEqual
from method_cases import explainer, registered
from torch import Tensor, nn

from captum_shallowcam import LayerCam, LayerRelevanceCam, LayerShallowCam
from captum_shallowcam.rules import IdentityRule

TIMEOUT = 60.0


def method_cases() -> list[str]:
    """Every registered method (the package's own classes; Captum's
    LayerGradCam takes no per-model lock), and LayerRelevanceCam with its
    convergence deltas, which are computed in the same locked call."""
    return [*registered(), "relevancecam+delta"]


def explain_with(name: str) -> Callable[[nn.Module, Any], Callable[[Tensor], Any]]:
    """``(model, layers) -> (x -> result)`` for a name of :func:`method_cases`."""
    if name == "relevancecam+delta":
        return lambda m, layers: (
            lambda x: LayerRelevanceCam(m, layers).attribute(
                x, target=[0, 2], return_convergence_delta=True
            )
        )
    return lambda m, layers: (
        lambda x: explainer(name, m, layers).attribute(x, target=[0, 2])
    )


# Captum's tensor assertions report through a TestCase.
TC = unittest.TestCase()


class Checkpoint(nn.Module):
    """Identity; when armed, its forward meets the other thread at a barrier, or
    signals ``entered`` and waits for ``release`` (only in the thread named
    ``wait_thread``)."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier: threading.Barrier | None = None
        self.entered: threading.Event | None = None
        self.release: threading.Event | None = None
        self.wait_thread: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.barrier is not None:
            self.barrier.wait(TIMEOUT)
        if (
            self.entered is not None
            and threading.current_thread().name == self.wait_thread
        ):
            self.entered.set()
            assert self.release is not None
            if not self.release.wait(TIMEOUT):
                raise TimeoutError("release was never set")
        return x

    def disarm(self) -> None:
        self.barrier = self.entered = self.release = None
        self.wait_thread = None


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU(inplace=True)
        self.checkpoint = Checkpoint()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.checkpoint(x)
        out = self.relu2(self.conv2(x))
        x = self.pool(out + x)
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(self.gap(x), 1))


def make_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    net.bn1.running_mean.uniform_(-0.5, 0.5)
    net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


def layers(net: Net) -> list[nn.Module]:
    return [net.relu1, net.pool, net.relu3]


def inputs(seed: int = 1) -> Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 3, 16, 16)


def all_tensors(result: Any) -> list[Tensor]:
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, (list, tuple)):
        return [t for r in result for t in all_tensors(r)]
    return []


def assert_same(result: Any, expected: Any) -> None:
    got, want = all_tensors(result), all_tensors(expected)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assertTensorAlmostEqual(
            TC, g, w, delta=1e-6 * float(w.abs().max()) + 1e-9, mode="max"
        )


class Worker(threading.Thread):
    """Runs ``fn`` and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any], name: str | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test
            self.error = error

    def outcome(self) -> Any:
        self.join(TIMEOUT)
        assert not self.is_alive(), "worker thread hung"
        if self.error is not None:
            raise self.error
        return self.result


def checkpoint_rules() -> dict[type, IdentityRule]:
    return {Checkpoint: IdentityRule()}


# ------------------------------------------------------------------------ tests
@pytest.mark.parametrize("method", method_cases())
def test_two_threads_two_copies_match_sequential_runs(method) -> None:
    model_a = make_net()
    model_b = copy.deepcopy(model_a)
    x_a, x_b = inputs(1), inputs(2)
    explain_a = explain_with(method)(model_a, layers(model_a))
    explain_b = explain_with(method)(model_b, layers(model_b))
    expected_a, expected_b = explain_a(x_a), explain_b(x_b)

    # Both forward passes are inside the model at the same time.
    barrier = threading.Barrier(2)
    model_a.checkpoint.barrier = model_b.checkpoint.barrier = barrier
    try:
        workers = [Worker(lambda: explain_a(x_a)), Worker(lambda: explain_b(x_b))]
        for worker in workers:
            worker.start()
        result_a, result_b = (worker.outcome() for worker in workers)
    finally:
        model_a.checkpoint.disarm()
        model_b.checkpoint.disarm()
    assert not barrier.broken
    assert_same(result_a, expected_a)
    assert_same(result_b, expected_b)


@pytest.mark.parametrize("second", method_cases())
@pytest.mark.parametrize("first", method_cases())
def test_one_model_from_two_threads_at_once_is_refused(first, second) -> None:
    model = make_net()
    x = inputs()
    explain_first = explain_with(first)(model, layers(model))
    explain_second = explain_with(second)(model, layers(model))
    expected_first = explain_first(x)
    expected_second = explain_second(x)

    checkpoint = model.checkpoint
    checkpoint.entered, checkpoint.release = threading.Event(), threading.Event()
    checkpoint.wait_thread = "explainer"
    worker = Worker(lambda: explain_first(x), name="explainer")
    try:
        worker.start()
        assert checkpoint.entered.wait(TIMEOUT)
        # The first call is now blocked inside its forward pass.
        with pytest.raises(RuntimeError, match="being explained in another thread"):
            explain_second(x)
    finally:
        checkpoint.release.set()
        result = worker.outcome()
        checkpoint.disarm()
    # The refused call did not disturb the first one, and the model is free again.
    assert_same(result, expected_first)
    assert_same(explain_second(x), expected_second)


def test_refusal_message_names_the_fix() -> None:
    model = make_net()
    x = inputs()
    checkpoint = model.checkpoint
    checkpoint.entered, checkpoint.release = threading.Event(), threading.Event()
    checkpoint.wait_thread = "explainer"
    worker = Worker(
        lambda: LayerShallowCam(model, model.pool).attribute(x), "explainer"
    )
    worker.start()
    try:
        assert checkpoint.entered.wait(TIMEOUT)
        with pytest.raises(RuntimeError) as info:
            LayerCam(model, model.pool).attribute(x)
    finally:
        checkpoint.release.set()
        worker.outcome()
        checkpoint.disarm()
    assert "copy.deepcopy(model)" in str(info.value)


@pytest.mark.parametrize("method", method_cases())
def test_plain_forward_from_another_thread_during_an_explanation(method) -> None:
    model = make_net()
    x_explained, x_plain = inputs(1), inputs(2)
    x_grad = x_plain.clone().requires_grad_(True)
    normal_output = model(x_grad)
    (normal_grad,) = torch.autograd.grad(normal_output[:, 1].sum(), x_grad)
    normal_output = normal_output.detach()
    explain = explain_with(method)(model, layers(model))
    expected = explain(x_explained)

    checkpoint = model.checkpoint
    checkpoint.entered, checkpoint.release = threading.Event(), threading.Event()
    checkpoint.wait_thread = "explainer"
    worker = Worker(lambda: explain(x_explained), name="explainer")
    worker.start()
    try:
        assert checkpoint.entered.wait(TIMEOUT)
        # The explanation's hooks (and, for relevance, its gates) are in place
        # right now; a plain forward and backward here must not see them.
        with torch.no_grad():
            output = model(x_plain)
        x_again = x_plain.clone().requires_grad_(True)
        with_grad = model(x_again)
        (grad,) = torch.autograd.grad(with_grad[:, 1].sum(), x_again)
        assert not checkpoint.release.is_set()
    finally:
        checkpoint.release.set()
        result = worker.outcome()
        checkpoint.disarm()
    assert torch.equal(output, normal_output)
    assert torch.equal(with_grad.detach(), normal_output)
    assert torch.equal(grad, normal_grad)
    assert_same(result, expected)


def test_a_failed_call_releases_the_model_for_other_threads() -> None:
    model = make_net()
    x = inputs()
    method = LayerRelevanceCam(model, model.pool)
    with pytest.raises(ValueError, match="out of range"):
        method.attribute(x, target=99)
    worker = Worker(lambda: method.attribute(x, target=1))
    worker.start()
    assert worker.outcome().shape == (2, 1, 8, 8)


def test_many_threads_many_copies() -> None:
    """Eight threads or more, a copy each, every method with one forward pass
    per call, all at once. (All the copies meet at one barrier in every forward
    pass; the perturbation methods run one forward per channel, group or step,
    a different number each, so they cannot share the barrier. They are run
    from two threads by the tests above.)"""
    names = [n for n in method_cases() if n not in registered(perturbation=True)]
    base = make_net()
    copies = [copy.deepcopy(base) for _ in range(max(8, len(names)))]
    jobs = [
        (explain_with(names[i % len(names)])(m, layers(m)), inputs(10 + i))
        for i, m in enumerate(copies)
    ]
    expected = [explain(x) for explain, x in jobs]
    barrier = threading.Barrier(len(copies))
    for m in copies:
        m.checkpoint.barrier = barrier
    try:
        workers = [Worker(lambda e=e, x=x: e(x)) for e, x in jobs]
        for worker in workers:
            worker.start()
        results = [worker.outcome() for worker in workers]
    finally:
        for m in copies:
            m.checkpoint.disarm()
    for result, want in zip(results, expected):
        assert_same(result, want)


def test_checkpoint_module_needs_no_rule() -> None:
    """The Checkpoint returns its input, which the engine accepts without a rule;
    with an explicit IdentityRule the maps are the same."""
    model = make_net()
    x = inputs()
    plain = LayerShallowCam(model, model.relu1).attribute(x, target=1)
    ruled = LayerShallowCam(model, model.relu1, rules=checkpoint_rules()).attribute(
        x, target=1
    )
    assert_same(ruled, plain)
