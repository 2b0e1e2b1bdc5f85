"""What a call does around a user's model, and undoes: nothing is left behind.

* :func:`exclusive` refuses to explain a module from two threads at once, or
  twice in one thread (an explanation inside the model's forward);
* :func:`buffers_preserved` puts back the buffers (BatchNorm statistics) that
  train-mode forward passes update, also when the model is reached through a
  function;
* :func:`original_module` and :func:`eager` explain what ``torch.compile``
  compiled as the original Python module, run eagerly;
* :func:`check_not_scripted` refuses TorchScript, whose modules run no hooks.
"""

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

_in_use: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()
_in_use_lock = threading.Lock()


@contextmanager
def exclusive(model: Any) -> Iterator[None]:
    """Holds every module of ``model`` (an ``nn.Module``; anything else holds
    nothing) for the block: a model that shares a module (a BatchNorm
    backbone) with one explained in another thread is refused, and so is a
    second explanation of a module in the thread that explains it."""
    if not isinstance(model, nn.Module):
        yield
        return
    me = threading.get_ident()
    modules = list(dict.fromkeys(model.modules()))
    with _in_use_lock:
        for module in modules:
            owner = _in_use.get(module)
            if owner is None:
                continue
            if owner != me:
                raise RuntimeError(
                    "This model (or a module it shares with another model) is being "
                    "explained in another thread right now. Explain one model instance "
                    "from one thread at a time, or give each thread its own copy "
                    "(copy.deepcopy(model))."
                )
            raise RuntimeError(
                "This model (or a module of it) is already being explained in this "
                "thread: an explanation was started inside the forward pass of "
                "another explanation. Nested explanations of one module are not "
                "supported; run them one after the other."
            )
        for module in modules:
            _in_use[module] = me
    try:
        yield
    finally:
        with _in_use_lock:
            for module in modules:
                _in_use.pop(module, None)


@contextmanager
def buffers_preserved(forward_func: Callable) -> Iterator[None]:
    """Forward passes in the block leave every buffer as it was (train-mode
    BatchNorm updates its running statistics, and a model may count its own
    calls in a buffer in any mode; an explanation or a metric must change
    neither). For an ``nn.Module`` all its buffers are saved; for a function,
    the buffers of each module it calls, saved before that module's first call
    (a global forward pre-hook, for this thread only)."""
    saved: list[tuple[Tensor, Tensor]] = []
    handle = None
    if isinstance(forward_func, nn.Module):
        saved = _copies(forward_func.buffers())
    else:
        me = threading.get_ident()
        seen: weakref.WeakSet[nn.Module] = weakref.WeakSet()

        def save_before_first_call(module: nn.Module, args: Any) -> None:
            if threading.get_ident() != me or module in seen:
                return
            seen.add(module)
            saved.extend(_copies(module.buffers(recurse=False)))

        handle = nn.modules.module.register_module_forward_pre_hook(
            save_before_first_call
        )
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
        if saved:
            with torch.no_grad():
                for buffer, copy in saved:
                    buffer.copy_(copy)


def _copies(buffers: Iterable[Tensor]) -> list[tuple[Tensor, Tensor]]:
    return [(b, b.detach().clone()) for b in buffers]


def _optimized_module_type() -> Any:
    """``torch.compile``'s module wrapper, or None when nothing was compiled
    (``torch._dynamo`` is only imported by ``torch.compile``; importing it here
    would cost every call a second)."""
    if "torch._dynamo" not in sys.modules:
        return None
    from torch._dynamo.eval_frame import OptimizedModule

    return OptimizedModule


def original_module(forward_func: Callable) -> Callable:
    """The module that ``torch.compile`` wrapped, or ``forward_func`` itself."""
    compiled = _optimized_module_type()
    while compiled is not None and isinstance(forward_func, compiled):
        forward_func = forward_func._orig_mod
    return forward_func


def eager(model: Any) -> AbstractContextManager[Any]:
    """Runs compiled parts of ``model`` (``torch.compile``'d submodules) as
    plain Python for the block, so that hooks and the relevance engine see
    every operation; a no-op when nothing in ``model`` is compiled."""
    compiled = _optimized_module_type()
    if compiled is None or not isinstance(model, nn.Module):
        return nullcontext()
    if not any(isinstance(m, compiled) for m in model.modules()):
        return nullcontext()
    return torch.compiler.set_stance("force_eager")


def check_not_scripted(forward_func: Callable, layers: Iterable[nn.Module]) -> None:
    """TorchScript modules run no Python hooks: refuse them by name."""
    scripted = (torch.jit.ScriptModule, torch.jit.ScriptFunction)
    parts = list(forward_func.modules()) if isinstance(forward_func, nn.Module) else []
    if any(isinstance(m, scripted) for m in [forward_func, *parts, *layers]):
        raise TypeError(
            "The model (or a layer) is a TorchScript module (torch.jit.script or "
            "torch.jit.trace), which runs no Python hooks, so its layers cannot be "
            "captured. Pass the original torch.nn.Module (torch.compile'd models "
            "are fine)."
        )
