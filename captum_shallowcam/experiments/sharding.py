r"""The benchmark at scale: sharded with ``torchrun``, resumable after a crash.

:func:`run_benchmark` is what ``python -m captum_shallowcam benchmark`` runs,
in one process or in each process that ``torchrun`` starts:

* **Ranks.** Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is set
  up with backend ``nccl`` when CUDA is available and ``gloo`` otherwise;
  each rank works on ``cuda:LOCAL_RANK`` (or the CPU). A collective that
  waits longer than ``timeout_s`` raises :class:`CollectiveTimeout`, which
  names the stage and what to do, instead of hanging.
* **Shards.** The photo list is cut into batches of ``batch_size`` in order,
  and batch ``b`` goes to rank ``b % world_size``. A photo is therefore
  always scored in the same batch, whatever the number of ranks, so 2 ranks
  give the scores of 1 process exactly.
* **Rows.** Each finished score (photo, layer, method) is one JSON line,
  appended and flushed at once to the rank's file beside the result,
  ``<out stem>.shard-<rank>.jsonl``; the first line a run writes records its
  settings. A ``kill -9`` loses at most the batch in flight (a torn last line
  is cut off when the file is opened again).
* **Resume.** With ``resume=True`` every shard file beside the result is
  read first (whatever the number of ranks that wrote it) and a
  (photo, layer, method) already there is not computed again; a batch is
  recomputed whole, in the same composition, only for its missing rows.
  Settings that differ from the files' (:data:`_MUST_MATCH`), and rows of
  photos that this run does not select at the same position with the same
  class, are refused.
* **Merge.** At the end rank 0 collects every rank's rows and builds the
  usual :class:`~captum_shallowcam.experiments.results.EvaluationResult`;
  :func:`merge_shards` does the same for a folder of shard files
  (``python -m captum_shallowcam report FOLDER``).
* **Progress.** Rank 0 shows one tqdm bar over all ranks' remaining work. Its
  count and ETA are an *estimate*: rank 0's own progress scaled by its share
  of the work (the shards are balanced to within one batch); no collective
  runs during the work. Every rank logs one line to stderr when it starts, at
  most every ``log_every_s`` seconds, and when it ends.
"""

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_shallowcam.experiments.ranks import (
    CollectiveTimeout,
    RankInfo,
    _collective,
    _log,
    barrier,
    close_ranks,
    init_ranks,
)
from captum_shallowcam.experiments.results import SCORE_FIELDS, EvaluationResult
from captum_shallowcam.experiments.scoring import load_batch, score_batch
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.metrics.registry import DEFAULT_METRIC, METRICS

__all__ = [
    "CollectiveTimeout",
    "RankInfo",
    "close_ranks",
    "init_ranks",
    "merge_shards",
    "run_benchmark",
    "shard_batches",
    "shard_paths",
]

#: Settings that must agree between a run and the shard files it resumes: all
#: that choose the photos, their classes, their inputs or how they are scored
#: (``channels_last``, the device and the batch sizes change the float rounding only).
_MUST_MATCH = (
    "model", "images", "labels", "devkit", "classes", "start", "limit", "n_images",
    "step", "layers", "methods", "protocol", "amp", "normalization", "rules",
)  # fmt: skip
Key = tuple[str, str, str]  # (image, layer, method)


def shard_batches(
    n_items: int, batch_size: int, rank: int, world_size: int
) -> list[range]:
    """The batches (ranges of photo positions) of ``rank``: batch ``b`` of the
    whole list goes to rank ``b % world_size``."""
    starts = range(0, n_items, batch_size)
    return [
        range(lo, min(lo + batch_size, n_items))
        for b, lo in enumerate(starts)
        if b % world_size == rank
    ]


def shard_paths(out: Path) -> list[Path]:
    """The shard files beside the result ``out``, in rank order."""
    out = Path(out)
    return sorted(
        out.parent.glob(f"{out.stem}.shard-*.jsonl"),
        key=lambda p: (len(p.name), p.name),
    )


def _shard_path(out: Path, rank: int) -> Path:
    return Path(out).parent / f"{Path(out).stem}.shard-{rank}.jsonl"


def read_shards(
    paths: Iterable[Path],
) -> tuple[list[dict[str, Any]], dict[Key, dict[str, Any]]]:
    """Settings records and score rows (first row per key) of shard files.

    A last line cut short by a crash is ignored.
    """
    settings: list[dict[str, Any]] = []
    rows: dict[Key, dict[str, Any]] = {}
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # torn by a crash
                record = json.loads(line)
                if "settings" in record:
                    settings.append(record["settings"])
                else:
                    rows.setdefault(
                        (record["image"], record["layer"], record["method"]), record
                    )
    return settings, rows


class ShardWriter:
    """Appends JSON lines to one file, flushing each (so ``kill -9`` loses none)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.new_file = not path.exists()
        if not self.new_file:
            _cut_torn_line(path)
        self.path = path
        self.handle = open(path, "a")
        self.rows = 0

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        self.rows += 1

    def close(self) -> None:
        self.handle.close()


def _drop_if_empty(writer: ShardWriter) -> None:
    """Removes a shard this run created that holds only its settings line:
    there is nothing in it to resume, and left behind it would refuse the next
    run (with other settings) on the same ``--out``."""
    writer.close()
    if writer.new_file and writer.rows == 1:
        writer.path.unlink(missing_ok=True)


def _cut_torn_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _check_settings(
    previous: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    must_match: Sequence[str] = _MUST_MATCH,
) -> None:
    """Every setting of ``must_match`` is the same in ``previous`` (the shard
    files' settings lines) as in ``settings``; else a ValueError naming it."""
    for old in previous:
        for key in must_match:
            if old.get(key) != settings.get(key):
                written = (
                    f"with {key} = {old.get(key)!r}"
                    if key in old
                    else f"by an earlier version that did not record {key}"
                )
                raise ValueError(
                    f"Cannot resume: the shard files beside the result were written "
                    f"{written}, this run has {settings.get(key)!r}. Use another "
                    "--out, or the same settings."
                )


def _check_rows(
    rows: dict[Key, dict[str, Any]], items: Sequence[Any], first_index: int
) -> None:
    """Every row already written names a photo of this run at the same position
    with the same class, so that rows of two photo selections never mix."""
    where = {item.name: (first_index + i, item.target) for i, item in enumerate(items)}
    for (image, _, _), row in rows.items():
        index, target = where.get(image, (None, None))
        if index is None:
            problem = "which this run does not select"
        elif index != row["index"]:
            problem = f"at position {row['index']}, which this run has at {index}"
        elif target is not None and target != row["target"]:
            problem = f"as class {row['target']}, which this run labels {target}"
        else:
            continue
        raise ValueError(
            f"Cannot resume: the shard files beside the result score photo {image!r} "
            f"{problem}: the photos or labels differ (--images, --labels, --classes, "
            "--start, --limit). Use another --out, or the same photos and labels."
        )


def rows_to_result(
    settings: dict[str, Any], rows: dict[Key, dict[str, Any]]
) -> tuple[EvaluationResult, int]:
    """The result of the photos that have every (layer, method) row, in photo
    order, and the number of photos left out as incomplete."""
    layers, methods = list(settings["layers"]), list(settings["methods"])
    photos: dict[str, tuple[int, int]] = {}
    for (image, _, _), row in rows.items():
        photos.setdefault(image, (row["index"], row["target"]))
    complete = [
        image
        for image in sorted(photos, key=lambda name: photos[name][0])
        if all((image, layer, m) in rows for layer in layers for m in methods)
    ]
    result = EvaluationResult(
        dict(settings, n_images=len(complete)),
        complete,
        [photos[image][1] for image in complete],
    )
    for method in methods:
        result.scores[method] = {
            layer: {
                kind: [rows[(image, layer, method)][kind] for image in complete]
                for kind in SCORE_FIELDS
            }
            for layer in layers
        }
    return result, len(photos) - len(complete)


def merge_shards(paths: Sequence[Path]) -> EvaluationResult:
    """Merges shard files (of one run, or of a run and its resumptions)."""
    settings, rows = read_shards(paths)
    if not settings:
        raise ValueError(
            f"No settings line in {', '.join(map(str, paths))}: not shard files."
        )
    _check_settings(settings[1:], settings[0])
    result, incomplete = rows_to_result(settings[0], rows)
    if incomplete:
        print(
            f"{incomplete} photos lack some (layer, method) rows and are left out "
            "(a run still going, or one to finish with --resume).",
            file=sys.stderr,
        )
    return result


def run_benchmark(
    model: nn.Module,
    items: Sequence[Any],
    preprocess: Callable[[Any], Tensor],
    layers: dict[str, nn.Module],
    methods: Sequence[str],
    out: Path,
    metric_kwargs: dict[str, Any],
    settings: dict[str, Any],
    batch_size: int = 4,
    resume: bool = False,
    info: RankInfo | None = None,
    show_progress: bool = True,
    log_every_s: float = 60.0,
    rules: str | None = None,
) -> EvaluationResult | None:
    """Scores ``items`` (``LabelledImage``-like: ``.name``, ``.target``,
    ``.load()``) on this rank's shard; returns the merged result on rank 0
    and None on the others.

    ``metric_kwargs`` go to :func:`~captum_shallowcam.metrics.deletion_insertion`
    (``step`` among them); ``rules`` names a rule preset of the relevance
    methods. ``settings`` are recorded (with ``layers``,
    ``methods``, ``step`` and ``world_size`` added).
    """
    info = info or init_ranks()
    out = Path(out)
    _check_unique_names(items)
    names = list(layers)
    settings = dict(
        settings, step=metric_kwargs["step"], layers=names, methods=list(methods)
    )
    done = _rows_done(out, resume, settings, items)
    barrier(info, "start")  # no rank writes before every rank has read the files

    model = model.to(info.device)
    explainers = {
        m: make_explainer(model, list(layers.values()), m, rules) for m in methods
    }
    work = _Work(items, names, list(methods), done, int(settings.get("start") or 0))
    mine = shard_batches(len(items), batch_size, info.rank, info.world_size)
    my_work = sum(work.todo(b) for b in mine)
    work.log_start(info, mine, my_work)
    writer = _open_shard(out, info, settings)
    progress = _Progress(
        info, my_work, work.todo(range(len(items))), show_progress, log_every_s
    )
    try:
        for batch in mine:
            if not work.todo(batch):
                continue
            chunk = [items[i] for i in batch]
            inputs, targets = load_batch(chunk, preprocess, model, info.device)
            target_tensor = torch.tensor(targets, device=info.device)
            for method, layer, scores in score_batch(
                model, explainers, names, inputs, target_tensor, metric_kwargs,
                work.wanted(chunk),
            ):  # fmt: skip
                progress.add(
                    work.write_rows(writer, batch, targets, method, layer, scores)
                )
            progress.log_now_and_then()
    except BaseException:
        _drop_if_empty(writer)
        raise
    finally:
        writer.close()
        progress.close()
    progress.log_done()
    return _gather(info, out, settings)


def _open_shard(out: Path, info: RankInfo, settings: dict[str, Any]) -> "ShardWriter":
    """This rank's shard file, its settings line written."""
    writer = ShardWriter(_shard_path(out, info.rank))
    writer.write(
        {"settings": dict(settings, world_size=info.world_size, rank=info.rank)}
    )
    return writer


class _Progress:
    """Rank 0's tqdm bar over all ranks' work (an estimate: its own progress
    scaled by its share) and every rank's log lines."""

    def __init__(
        self,
        info: RankInfo,
        my_work: int,
        all_work: int,
        show: bool,
        log_every_s: float,
    ) -> None:
        self.info, self.my_work, self.log_every_s = info, my_work, log_every_s
        self.bar = None
        if show and info.rank == 0:
            from tqdm import tqdm

            self.bar = tqdm(
                total=all_work, unit="score", file=sys.stderr, desc="all ranks (est.)"
            )
        self.scale = all_work / my_work if my_work else 0.0
        self.start = self.last_log = time.time()
        self.written = 0

    def add(self, fresh: int) -> None:
        self.written += fresh
        if self.bar is not None:
            self.bar.update(min(fresh * self.scale, self.bar.total - self.bar.n))

    def log_now_and_then(self) -> None:
        if time.time() - self.last_log >= self.log_every_s:
            self.last_log = time.time()
            rate = self.written / (self.last_log - self.start)
            _log(self.info, f"{self.written}/{self.my_work} scores, {rate:.2f}/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def log_done(self) -> None:
        elapsed = time.time() - self.start
        rate = self.written / max(elapsed, 1e-9)
        _log(
            self.info,
            f"done: {self.written} scores in {elapsed:.0f} s ({rate:.2f}/s)",
        )


def _check_unique_names(items: Sequence[Any]) -> None:
    """Rows are keyed by photo name: a name given twice is refused."""
    seen: set[str] = set()
    twice = sorted(
        {item.name for item in items if item.name in seen or seen.add(item.name)}
    )
    if twice:
        raise ValueError(
            f"Photo names must be unique to key the rows; repeated: {', '.join(twice[:5])}."
        )


def _rows_done(
    out: Path,
    resume: bool,
    settings: dict[str, Any],
    items: Sequence[Any],
    must_match: Sequence[str] = _MUST_MATCH,
) -> set[Key]:
    """The rows the shard files beside ``out`` hold already (with ``resume``,
    after checking that their ``must_match`` settings are this run's); without
    ``resume`` there must be no shard files."""
    if resume:
        previous, rows = read_shards(shard_paths(out))
        _check_settings(previous, settings, must_match)
        _check_rows(rows, items, int(settings.get("start") or 0))
        return set(rows)
    if shard_paths(out):
        raise FileExistsError(
            f"Shard files of an earlier run lie beside {out}: "
            f"{', '.join(p.name for p in shard_paths(out))}. Pass --resume to "
            "continue that run, or remove them (or use another --out)."
        )
    return set()


@dataclass
class _Work:
    """The (photo, layer, method) rows of a run, and which are done."""

    items: Sequence[Any]
    layers: list[str]
    methods: list[str]
    done: set[Key]
    first_index: int  # the position of items[0] in the selected list

    def todo(self, batch: range) -> int:
        """How many rows of the photos at positions ``batch`` are not done."""
        return sum(
            (self.items[i].name, layer, m) not in self.done
            for i in batch
            for layer in self.layers
            for m in self.methods
        )

    def log_start(self, info: RankInfo, mine: list[range], my_work: int) -> None:
        n_mine = sum(len(b) for b in mine)
        per_photo = len(self.layers) * len(self.methods)
        _log(
            info,
            f"{len(mine)} batches ({n_mine} photos) on {info.device}; "
            f"{my_work} of {len(mine) and n_mine * per_photo} scores to do",
        )

    def wanted(self, chunk: list[Any]) -> Callable[[str, str], bool]:
        """Whether a (method, layer) still lacks a row of some photo of ``chunk``."""
        return lambda method, layer: any(
            (item.name, layer, method) not in self.done for item in chunk
        )

    def write_rows(
        self,
        writer: "ShardWriter",
        batch: range,
        targets: list[int],
        method: str,
        layer: str,
        scores: Any,
    ) -> int:
        """Writes the rows of ``batch`` not done yet; returns how many."""
        record = METRICS[DEFAULT_METRIC].record(scores)
        fresh = 0
        for k, i in enumerate(batch):
            key = (self.items[i].name, layer, method)
            if key in self.done:
                continue
            row = {
                "index": self.first_index + i,
                "image": key[0],
                "target": int(targets[k]),
                "layer": layer,
                "method": method,
            }
            writer.write(row | {kind: record[kind][k] for kind in SCORE_FIELDS})
            self.done.add(key)
            fresh += 1
        return fresh


def _gather(
    info: RankInfo, out: Path, settings: dict[str, Any]
) -> EvaluationResult | None:
    """Rank 0's result of every rank's rows (:func:`gather_rows`)."""
    rows = gather_rows(info, out)
    if rows is None:
        return None
    result, incomplete = rows_to_result(
        dict(settings, world_size=info.world_size), rows
    )
    if incomplete and info.distributed:
        raise RuntimeError(
            f"{incomplete} photos lack rows after all ranks finished; this is a bug."
        )
    return result


def gather_rows(info: RankInfo, out: Path) -> dict[Key, dict[str, Any]] | None:
    """Rank 0 merges every rank's rows (sent over the process group, so the
    ranks need not share a file system) with the shard files it can read; the
    other ranks get None."""
    own = read_shards([_shard_path(out, info.rank)])[1]
    if info.distributed:
        import torch.distributed as dist

        gathered: list[Any] | None = (
            [None] * info.world_size if info.rank == 0 else None
        )
        _collective(info, "merge", lambda: dist.gather_object(own, gathered, dst=0))
        if info.rank != 0:
            return None
        rows = read_shards(shard_paths(out))[1]
        for part in gathered or []:
            for key, row in part.items():
                rows.setdefault(key, row)
    else:
        rows = read_shards(shard_paths(out))[1]
        rows.update({k: v for k, v in own.items() if k not in rows})
    return rows
