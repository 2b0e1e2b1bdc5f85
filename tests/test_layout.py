"""The package's layout stays as docs/architecture.rst describes it: the library
imports nothing from the experiments or the command line, the import graph has
no cycle, and the old module names still give the same objects."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "captum_shallowcam"
#: The experiment code and the command line; the library never imports them.
NOT_LIBRARY = ("experiments", "cli")
#: Old module names kept as re-exports; they may import anything.
SHIMS = ("evaluation", "distributed", "images", "__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The captum_shallowcam modules a file imports (at any depth in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("captum_shallowcam"):
                found.add(node.module)
                for alias in node.names:  # ``from captum_shallowcam.cli import maps``
                    candidate = f"{node.module}.{alias.name}"
                    if _path_of(candidate) is not None:
                        found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(
                a.name for a in node.names if a.name.startswith("captum_shallowcam")
            )
    return found


def _path_of(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_library_imports_neither_experiments_nor_cli():
    offending = {
        module: sorted(i for i in imports if _part(i) in NOT_LIBRARY)
        for module, imports in _graph().items()
        if _part(module) not in NOT_LIBRARY + SHIMS
    }
    assert {m: i for m, i in offending.items() if i} == {}


def test_the_import_graph_has_no_cycle():
    """Imports between modules (a package's ``__init__`` re-exporting its own
    modules is no cycle: a module importing its parent package is)."""
    graph = _graph()
    edges = {
        module: {
            i
            for i in imports
            if i in graph and i != module and not module.startswith(i + ".")
        }
        for module, imports in graph.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(module: str, path: list[str]) -> bool:
        state[module] = 1
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt) :] + [module, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, nxt]):
                return True
        state[module] = 2
        return False

    for module in sorted(edges):
        if module not in state and visit(module, [module]):
            break
    assert cycle == []


@pytest.mark.parametrize(
    "old, new, names",
    [
        (
            "captum_shallowcam.evaluation",
            "captum_shallowcam.experiments",
            ["EvaluationResult", "evaluate", "merge_results", "paired_difference",
             "summary_rows", "markdown_table", "overall_plot", "image_batches",
             "score_batch"],
        ),
        ("captum_shallowcam.evaluation", "captum_shallowcam.methods", ["make_explainer"]),
        (
            "captum_shallowcam.images",
            "captum_shallowcam.experiments.images",
            ["SAMPLE_IMAGES", "LabelledImage", "read_image_folder",
             "read_imagenet_val", "sample_images"],
        ),
        (
            "captum_shallowcam.distributed",
            "captum_shallowcam.experiments.sharding",
            ["run_benchmark", "merge_shards", "shard_batches", "shard_paths",
             "read_shards", "ShardWriter"],
        ),
        (
            "captum_shallowcam.distributed",
            "captum_shallowcam.experiments.ranks",
            ["init_ranks", "close_ranks", "RankInfo", "CollectiveTimeout"],
        ),
        ("captum_shallowcam.__main__", "captum_shallowcam.cli", ["main", "build_parser"]),
    ],
)  # fmt: skip
def test_old_module_names_give_the_same_objects(old, new, names):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name
