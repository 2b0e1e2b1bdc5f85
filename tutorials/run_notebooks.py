"""Execute the tutorial notebooks top to bottom and fail on the first error.

Usage::

    python tutorials/run_notebooks.py                      # every tutorials/*.ipynb
    python tutorials/run_notebooks.py tutorials/02_deletion_insertion.ipynb
    python tutorials/run_notebooks.py --set STEP=7168      # override a parameter
    python tutorials/run_notebooks.py --store              # refresh stored outputs

Each notebook runs in a fresh ``python3`` kernel, with the ``tutorials/`` folder
as working directory and this checkout first on ``PYTHONPATH`` (so the package
is imported from the repository even when it is not installed). A cell may run
for at most 600 s. The executed copy is written to a temporary folder, so the
outputs stored in the repository are left as they are, unless ``--store`` is
given.

``--set NAME=VALUE`` adds a cell right after the cell tagged ``parameters``
(the papermill convention) that assigns ``NAME = VALUE``; ``VALUE`` is Python
source, e.g. ``--set STEP=7168`` or ``--set 'LAYER="stage3"'``.

Exit status: 0 when every notebook ran without error, 1 otherwise.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

TUTORIALS = Path(__file__).resolve().parent
REPO_ROOT = TUTORIALS.parent
CELL_TIMEOUT_S = 600
KERNEL = "python3"


def _parameter_overrides(assignments):
    lines = []
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SystemExit(f"--set expects NAME=VALUE, got {assignment!r}")
        lines.append(f"{name.strip()} = {value.strip()}")
    return "\n".join(lines)


def _inject_parameters(nb, source):
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            injected = nbformat.v4.new_code_cell(source)
            injected.metadata["tags"] = ["injected-parameters"]
            nb.cells.insert(index + 1, injected)
            return
    raise SystemExit("--set was given but the notebook has no cell tagged 'parameters'")


def run_notebook(path, out_dir, overrides, store):
    """Runs one notebook; returns (seconds, error message or None)."""
    nb = nbformat.read(path, as_version=4)
    if overrides and not store:
        _inject_parameters(nb, overrides)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        record_timing=False,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)
    except Exception as exc:  # kernel died, timeout, missing kernel, ...
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    target = path if store and error is None else out_dir / path.name
    nbformat.write(nb, target)
    return seconds, error, target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="notebooks to run (default: every tutorials/*.ipynb)",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter of the cell tagged 'parameters'",
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="write the outputs back into the notebooks (refresh the stored copies)",
    )
    args = parser.parse_args(argv)
    if args.store and args.assignments:
        parser.error("--store runs the notebooks with their own parameters; drop --set")

    notebooks = [p.resolve() for p in args.notebooks] or sorted(
        TUTORIALS.glob("*.ipynb")
    )
    if not notebooks:
        print("no notebooks found in", TUTORIALS)
        return 1
    overrides = _parameter_overrides(args.assignments)

    # The kernel inherits this environment: import the package from this
    # checkout, and let the notebooks' `%matplotlib inline` draw the figures.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ.pop("MPLBACKEND", None)

    out_dir = Path(tempfile.mkdtemp(prefix="shallowcam-notebooks-"))
    failures = 0
    total = 0.0
    for path in notebooks:
        print(f"running {path.name} ...", flush=True)
        seconds, error, written = run_notebook(path, out_dir, overrides, args.store)
        total += seconds
        status = "ok" if error is None else "FAILED"
        print(f"  {status} in {seconds:.1f} s -> {written}", flush=True)
        if error is not None:
            failures += 1
            print(error, file=sys.stderr)
    print(
        f"{len(notebooks) - failures}/{len(notebooks)} notebooks ran in {total:.1f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
