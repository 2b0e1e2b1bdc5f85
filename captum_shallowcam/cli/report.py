"""``report``: merge benchmark results and write the table and plot again.

:func:`write_report` is also what ``benchmark`` writes at the end of a run, and
:func:`write_sanity_report` what ``sanity`` writes (``report`` merges sanity
shard files too).
"""

import argparse
import json
import math
from pathlib import Path

from captum_shallowcam.cli._common import (
    MIN_PHOTOS_FOR_INTERVALS,
    SCORE,
    UsageError,
    parse_ranges,
    prepare_out,
)
from captum_shallowcam.experiments.reports import markdown_table, overall_plot
from captum_shallowcam.experiments.results import (
    SCORE_FIELDS,
    EvaluationResult,
    merge_results,
)
from captum_shallowcam.experiments.sanity import merge_sanity_shards, plot_cascading
from captum_shallowcam.experiments.sharding import merge_shards
from captum_shallowcam.experiments.statistics import summary_rows

HELP = "merge benchmark results (JSON) or sanity shard files and report them again"


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "report",
        help=HELP,
        description="Merges JSON files written by benchmark (runs on other images add rows, "
        "runs of other methods add methods) and writes the table and plot again.",
    )
    p.add_argument(
        "results",
        nargs="+",
        help="JSON files written by benchmark, shard files (.jsonl) or folders of shard files",
    )
    p.add_argument(
        "--classes", default=None,
        help="keep these class index ranges only, e.g. 7-24,80 (default: all)",
    )  # fmt: skip
    p.add_argument(
        "--out", default="report.json",
        help="merged results (JSON), with .md and .png beside it (default: report.json)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    if args.classes:
        parse_ranges(args.classes)
    prepare_out(Path(args.out), "report")
    sanity_shards = _sanity_shards([Path(given) for given in args.results])
    if sanity_shards:
        if args.classes:
            raise UsageError("--classes applies to benchmark results, not to sanity's")
        try:
            result = merge_sanity_shards(sanity_shards)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"cannot merge the sanity shard files: {error}") from None
        write_sanity_report(result, Path(args.out))
        return
    results = []
    for given in map(Path, args.results):
        shards = sorted(given.glob("*.shard-*.jsonl")) if given.is_dir() else []
        if given.is_dir() and not shards:
            raise UsageError(
                f"no shard files (*.shard-*.jsonl) in {given}; give JSON or .jsonl files"
            )
        if shards or given.suffix == ".jsonl":
            results.append(_read_shards(given, shards or [given]))
        else:
            results.append(_read_result(given))
        _check_result(results[-1], given)
    try:
        merged = merge_results(results)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.classes:
        keep = parse_ranges(args.classes)
        merged = merged.subset([i for i, t in enumerate(merged.targets) if t in keep])
        merged.settings["classes"] = args.classes
    if not merged.images:
        raise UsageError("no images left to report after --classes; loosen it")
    _check_finite_scores(merged)
    write_report(merged, Path(args.out))


def _sanity_shards(given: list[Path]) -> list[Path]:
    """The shard files given (folders of them, or .jsonl files) when they were
    written by ``sanity``; none otherwise."""
    paths: list[Path] = []
    for path in given:
        if path.is_dir():
            paths.extend(sorted(path.glob("*.shard-*.jsonl")))
        elif path.suffix == ".jsonl" and path.is_file():
            paths.append(path)
        else:
            return []
    try:
        with open(paths[0]) as handle:
            first = json.loads(handle.readline())
    except (IndexError, OSError, ValueError):
        return []
    is_sanity = isinstance(first, dict) and (first.get("settings") or {}).get("kind")
    return paths if is_sanity == "sanity" else []


def _check_finite_scores(result: EvaluationResult) -> None:
    """A NaN score would make its row of the table NaN without a word."""
    for method, per_layer in result.scores.items():
        for layer, entry in per_layer.items():
            for kind, values in entry.items():
                bad = [
                    i
                    for i, v in enumerate(values)
                    if not isinstance(v, (int, float)) or not math.isfinite(v)
                ]
                if bad:
                    raise UsageError(
                        f"the {kind} score of {method} at {layer} is {values[bad[0]]} "
                        f"for {result.images[bad[0]]} ({len(bad)} images in all); "
                        "score those photos again or leave them out"
                    )


def _read_shards(given: Path, paths: list[Path]) -> EvaluationResult:
    try:
        return merge_shards(paths)
    except FileNotFoundError:
        raise UsageError(
            f"no shard file {given}; give files written by benchmark"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f"{type(error).__name__}: {error}"
        raise UsageError(
            f"{given} is not shard files written by benchmark ({detail})"
        ) from None


def _check_result(result: EvaluationResult, path: Path) -> None:
    """Every (method, layer) of the result has one score of each kind per photo."""
    layers = result.settings.get("layers")
    n = len(result.images)
    problem = None
    if not isinstance(layers, list) or not layers:
        problem = "its settings name no layers"
    elif len(result.targets) != n:
        problem = f"it has {len(result.targets)} targets for {n} images"
    elif not result.scores:
        problem = "it holds no scores"
    for method, per_layer in result.scores.items():
        for layer in layers or []:
            entry = per_layer.get(layer) if isinstance(per_layer, dict) else None
            for kind in SCORE_FIELDS:
                values = entry.get(kind) if isinstance(entry, dict) else None
                if problem is None and (
                    not isinstance(values, list) or len(values) != n
                ):
                    count = len(values) if isinstance(values, list) else "no"
                    problem = (
                        f"{method} at {layer} has {count} {kind} scores for {n} images"
                    )
    if problem is not None:
        raise UsageError(f"{path} is not a complete benchmark result: {problem}")


def _read_result(path: Path) -> EvaluationResult:
    try:
        return EvaluationResult.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UsageError(
            f"no results file {path}; give JSON files written by benchmark"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a JSON file written by benchmark") from None
    except (OSError, ValueError) as error:
        raise UsageError(
            f"cannot read {path} ({type(error).__name__}: {error}); give JSON files "
            "written by benchmark"
        ) from None


def write_report(result: EvaluationResult, out: Path) -> None:
    """Prints the table; writes JSON (per image), markdown and the plot."""
    s = result.settings
    methods = list(result.scores)
    baseline = "layercam" if "layercam" in methods else methods[0]
    table = markdown_table(summary_rows(result, baseline), baseline)
    n_images = len(result.images)
    header = (
        f"{s['model']}, {n_images} images from {s['images']}, step {s['step']}; "
        f"{s.get('metric', s['protocol'])}"
    )
    legend = (
        f"Columns: mean AUCs over the images (deletion: lower is better; insertion: "
        f"higher is better); {SCORE}; Δ: mean paired difference of overall to "
        f"{baseline} on the same images, with its 95% bootstrap interval."
    )
    if n_images < MIN_PHOTOS_FOR_INTERVALS:
        legend += (
            f" Caution: from {n_images} images (fewer than {MIN_PHOTOS_FOR_INTERVALS}) the "
            "bootstrap has few distinct resamples; its intervals are too narrow to trust."
        )
    print(f"\n{header}\n\n{table}\n\n{legend}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=1))
    out.with_suffix(".md").write_text(f"{header}\n\n{table}\n\n{legend}\n")
    plot_title = f"{s['model']}, {n_images} images, step {s['step']}"
    overall_plot(result, title=plot_title).savefig(out.with_suffix(".png"), dpi=100)
    print(
        f"\nper-image results: {out}; table: {out.with_suffix('.md')}; plot: {out.with_suffix('.png')}"
    )


def write_sanity_report(result: dict, out: Path) -> None:
    """Writes the JSON (and the plot of the curves); prints the mean values."""
    with open(out, "w") as handle:
        json.dump(result, handle)
    s = result["settings"]
    print(
        f"{s['model']}, {s['n_images']} images from {s['images']}, {s['order']} "
        f"randomization, {len(result['steps'])} {s['granularity']} steps, seed "
        f"{s['seed']}; explained class: the prediction"
    )
    print("| layer | method | Spearman, all randomized | class sensitivity |")
    print("|---|---|---|---|")
    for method, per_layer in result["scores"].items():
        for layer, fields in per_layer.items():
            last = (
                _mean([row[-1] for row in fields["spearman"]])
                if fields.get("spearman") and result["steps"]
                else "—"
            )
            sensitivity = ", ".join(
                f"{o} {_mean(fields[f'class_sensitivity_{o}'])}" for o in s["other"]
            )
            print(f"| {layer} | {method} | {last} | {sensitivity or '—'} |")
    print(
        "Columns: mean Spearman rank correlation between the trained model's map "
        "and the map once every step is randomized (near 0: the map depends on the "
        "weights), and between the maps of the top class and of the other class "
        "(lower: more class-sensitive); nulls (constant maps) left out."
    )
    written = [str(out)]
    if result["steps"]:
        plot_cascading(result, out.with_suffix(".png"))
        written.append(str(out.with_suffix(".png")))
    print(f"results: {', '.join(written)}")


def _mean(values: list) -> str:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return f"{sum(kept) / len(kept):.3f}" if kept else "n/a"
