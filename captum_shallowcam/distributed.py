"""Moved to :mod:`captum_shallowcam.experiments.sharding` (and
:mod:`~captum_shallowcam.experiments.ranks`); this name keeps old imports
working."""

from captum_shallowcam.experiments.ranks import (
    CollectiveTimeout,
    RankInfo,
    _collective,
    close_ranks,
    init_ranks,
)
from captum_shallowcam.experiments.sharding import (
    ShardWriter,
    merge_shards,
    read_shards,
    rows_to_result,
    run_benchmark,
    shard_batches,
    shard_paths,
)

__all__ = [
    "CollectiveTimeout",
    "RankInfo",
    "ShardWriter",
    "_collective",
    "close_ranks",
    "init_ranks",
    "merge_shards",
    "read_shards",
    "rows_to_result",
    "run_benchmark",
    "shard_batches",
    "shard_paths",
]
