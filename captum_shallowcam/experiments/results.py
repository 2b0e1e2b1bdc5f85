"""The benchmark's results: per-image scores by method, layer and kind, and their merge.

An :class:`EvaluationResult` is what ``python -m captum_shallowcam benchmark``
writes as JSON and what ``report`` reads and merges (:func:`merge_results`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from captum_shallowcam.metrics import DeletionInsertionResult

#: How result files written before the named protocols
#: (:mod:`captum_shallowcam.metrics.protocols`) record the ``captum-shallowcam``
#: protocol in their settings. The benchmark scripts whose results are merged
#: with those files record the same words, since :func:`merge_results` refuses
#: results whose ``protocol`` differs.
PROTOCOL_BEFORE_PRESETS = (
    "substrate: zeros in normalised input space (mean colour); insertion from "
    "Gaussian blur (kernel 11, sigma 5); score: softmax probability of the target"
)


@dataclass
class EvaluationResult:
    """Per-image scores: ``scores[method][layer][kind]`` with kind in
    ``deletion``, ``insertion``, ``overall`` (lists aligned with ``images``)."""

    settings: dict[str, object]
    images: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    scores: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def add_scores(
        self, method: str, layer: str, scores: DeletionInsertionResult
    ) -> None:
        """Appends one metric result's per-image AUCs and overall scores."""
        entry = self.scores.setdefault(method, {}).setdefault(
            layer, {"deletion": [], "insertion": [], "overall": []}
        )
        entry["deletion"].extend(scores.deletion_auc.tolist())
        entry["insertion"].extend(scores.insertion_auc.tolist())
        entry["overall"].extend(scores.overall.tolist())

    def to_dict(self) -> dict[str, object]:
        return {
            "settings": self.settings,
            "images": self.images,
            "targets": self.targets,
            "scores": self.scores,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "EvaluationResult":
        return cls(
            settings=dict(data["settings"]),  # type: ignore[arg-type]
            images=list(data["images"]),  # type: ignore[arg-type]
            targets=list(data["targets"]),  # type: ignore[arg-type]
            scores=dict(data["scores"]),  # type: ignore[arg-type]
        )

    def subset(self, keep: Sequence[int]) -> "EvaluationResult":
        """The same result restricted to the images at positions ``keep``."""
        scores = {
            method: {
                layer: {
                    kind: [values[i] for i in keep] for kind, values in entry.items()
                }
                for layer, entry in per_layer.items()
            }
            for method, per_layer in self.scores.items()
        }
        return EvaluationResult(
            dict(self.settings, n_images=len(keep)),
            [self.images[i] for i in keep],
            [self.targets[i] for i in keep],
            scores,
        )


def merge_results(results: Sequence[EvaluationResult]) -> EvaluationResult:
    """Joins results by image: runs on other images add rows, runs of other
    methods on the same images add methods. Settings that differ (the step, the
    layers) are refused; a method is kept only if it has every image."""
    if not results:
        raise ValueError("Nothing to merge.")
    first = results[0].settings
    for result in results[1:]:
        for key in ("step", "layers", "model", "protocol"):
            if result.settings.get(key) != first.get(key):
                raise ValueError(
                    f"Cannot merge results with different {key}: "
                    f"{first.get(key)!r} vs {result.settings.get(key)!r}."
                )
    images: dict[str, int] = {}
    per_image: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for result in results:
        for i, (name, target) in enumerate(zip(result.images, result.targets)):
            images.setdefault(name, target)
            for method, per_layer in result.scores.items():
                per_image.setdefault(method, {}).setdefault(name, {}).update(
                    {
                        layer: {k: v[i] for k, v in e.items()}
                        for layer, e in per_layer.items()
                    }
                )
    names = list(images)
    layers = list(first["layers"])  # type: ignore[call-overload]
    merged = EvaluationResult(
        dict(first, n_images=len(names), merged_from=len(results)),
        names,
        [images[n] for n in names],
    )
    for method, by_image in per_image.items():
        if set(by_image) != set(names):
            continue
        merged.scores[method] = {
            layer: {
                kind: [by_image[n][layer][kind] for n in names]
                for kind in ("deletion", "insertion", "overall")
            }
            for layer in layers
        }
    return merged
