"""Ranks under ``torchrun``: the process group, its collectives and their timeouts.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_ranks` sets up the process
group with backend ``nccl`` when CUDA is available and ``gloo`` otherwise;
each rank works on ``cuda:LOCAL_RANK`` (or the CPU). A collective that waits
longer than the timeout raises :class:`CollectiveTimeout`, which names the
stage and what to do, instead of hanging.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

__all__ = ["CollectiveTimeout", "RankInfo", "close_ranks", "init_ranks"]


class CollectiveTimeout(RuntimeError):
    """A collective waited longer than the timeout: another rank is gone or stuck."""


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    timeout_s: float

    @property
    def distributed(self) -> bool:
        """Whether this process is in a process group of several ranks."""
        import torch.distributed as dist

        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def init_ranks(timeout_s: float = 1800.0, device: str | None = None) -> RankInfo:
    """Reads torchrun's environment and joins the process group (if any).

    ``device`` None picks ``cuda:LOCAL_RANK`` when CUDA is available, else
    the CPU. The backend follows the device: ``nccl`` for CUDA, ``gloo`` for
    the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if dev.type == "cuda" else "gloo",
                timeout=timedelta(seconds=timeout_s),
            )
    return RankInfo(rank, world_size, local_rank, dev, timeout_s)


def close_ranks(info: RankInfo, finished: bool = True) -> None:
    """Leaves the process group: after a last barrier when the run finished, so
    that no rank exits while the backend's threads still serve another rank (a
    rank that exits with a live gloo group aborts with "terminate called
    without an active exception")."""
    if not info.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if finished:
        _collective(info, "finish", dist.barrier)
    dist.destroy_process_group()


def _collective(info: RankInfo, stage: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except RuntimeError as error:  # gloo and nccl report timeouts this way
        raise CollectiveTimeout(
            f"rank {info.rank} of {info.world_size}: waiting for the other ranks at "
            f"'{stage}' failed after at most {info.timeout_s:g} s ({error}). "
            "Another rank has probably crashed or is stuck: read its log. The rows "
            "already written are kept; run the same command again with --resume "
            "to finish (raise --dist-timeout if ranks are just slow)."
        ) from error


def _log(info: RankInfo, message: str) -> None:
    print(
        f"[rank {info.rank}/{info.world_size}] {message}", file=sys.stderr, flush=True
    )
