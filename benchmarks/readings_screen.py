"""Screens readings of the inter-layer relevance from one set of passes per batch.

For every batch, one ``LayerShallowCam`` pass over the seven stages of
EfficientNet-Lite0 gives the activations ``A``, gradients ``G`` and CLRP
relevance ``R`` at each stage; two more relevance passes push down the
sign-aware LayerCAM evidence ``E = ReLU(G) ReLU(A)`` of the deepest stage
(FG-CAM's direction) and of the next stage (the adjacent layer). The maps
below are built from these tensors and scored by deletion/insertion
(``S = ReLU(G) A``, ``S+ = ReLU(G) ReLU(A)``, ``P = [A > 0]``; the candidate
names are the keys of the JSON):

* ``layercam``: ``ReLU(sum_k S_k)``, the published LayerCAM;
* ``layercam_pos``: ``sum_k S+_k``, the sign-aware LayerCAM
  (``LayerCam(..., relu_activations=True)``);
* ``default``: the 0.1 default, ``ReLU(sum_k ReLU(alpha_k) S_k)``;
* ``default_pos``: ``sum_k ReLU(alpha_k) S+_k``, alpha over all positions;
* ``alphaP_pos``: ``sum_k ReLU(alpha+_k) S+_k``, alpha+ summed where ``A > 0``
  (``LayerShallowCam(..., channel_weights="positive")``);
* ``sqrt_alphaP_pos``: ``sum_k sqrt(ReLU(alpha+_k)) S+_k`` (``channel_weights="sqrt"``);
* ``spatialR``, ``chan_spatial``, ``lc_x_R``: per-position CLRP relevance
  ``sum_k R_k``, ``sum_k S+_k R_k``, and the sign-aware LayerCAM map times
  ``sum_k R_k``;
* ``fg_spatial``, ``lc_x_fg``: relevance pushed down from the deepest stage's
  evidence, summed over channels, alone and times the sign-aware LayerCAM map;
  ``fgalpha_pos``: its channel sums as weights;
* ``adj_spatial``, ``lc_x_adj``: the same from the next stage's evidence;
* ``gate_alphaP_pos``: ``sum_k [alpha+_k > 0] S+_k`` (relevance only selects);
  ``pow4_alphaP_pos``: the weights ``ReLU(alpha+_k)^(1/4)``;
* ``mass_alphaP_pos``: ``sum_k ReLU(alpha+_k) / T_k S+_k`` with
  ``T_k = sum_ij S+_k`` (each channel adds up to its relevance);
  ``mass_sqrt_alphaP_pos``: ``sum_k sqrt(ReLU(alpha+_k) / T_k) S+_k`` (each
  channel adds up to ``sqrt(alpha+_k T_k)``, the geometric mean of relevance
  and mask evidence: ``channel_weights="geometric"``, the default);
* ``density_alphaP_pos``, ``sqrt_density_alphaP_pos``: the same with the
  activation total ``sum_ij ReLU(A_k)`` in place of ``T_k``;
* ``sqrt_fgalpha_pos``, ``sqrt_adjalpha_pos``: square-root channel weights from
  the relevance pushed from the deepest / the next stage;
  ``sqrt_x_fg``: the square-root default's map times ``fg_spatial``;
  ``lc_x_fgP``: the sign-aware LayerCAM map times the pushed relevance summed
  where ``A > 0``.

A diagnostic for the results page (its pushed-down relevance is a ``refine``
step of :func:`~captum_shallowcam.attr.compute_layer_passes`), not an option of
the package. Usage::

    python benchmarks/readings_screen.py --images ../shared/data/imagenet-samples \
        --limit 24 --step 7168 --methods layercam,layercam_pos,sqrt_alphaP_pos --out screen.json
"""

import argparse
import json
import time

import torch

from captum_shallowcam.attr import compute_layer_passes
from captum_shallowcam.experiments import image_batches, paired_difference
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.experiments.results import PROTOCOL_BEFORE_PRESETS as PROTOCOL
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.models import load_model


class PushedDown:
    """A relevance refinement (run inside the passes, after the gradients) that
    keeps the CLRP relevance and also pushes down the sign-aware LayerCAM
    evidence of the deepest capture (FG-CAM-like, ``fg``) and of the next
    capture (``adj``)."""

    def __call__(self, engine, passes, relevances):
        caps = engine.captures
        order = sorted(range(len(caps)), key=lambda i: caps[i].order)
        top = order[-1]
        evidence = [
            torch.relu(g) * torch.relu(a)
            for a, g in zip(passes.activations, passes.gradients)
        ]
        lower = [caps[i] for i in order[:-1]]
        rel = engine.relevance(
            caps[top].tensor, evidence[top], lower, retain_graph=True
        )
        self.fg = [None] * len(caps)
        for i, r in zip(order[:-1], rel):
            self.fg[i] = r
        self.fg[top] = evidence[top]
        self.adj = [None] * len(caps)
        for lo, up in zip(order[:-1], order[1:]):
            (self.adj[lo],) = engine.relevance(
                caps[up].tensor, evidence[up], [caps[lo]], retain_graph=True
            )
        self.adj[top] = evidence[top]
        return relevances


def cs(x):
    return x.sum(1, keepdim=True)


def candidates(a, g, r, fg, adj):
    S = torch.relu(g) * a
    Sp = torch.relu(g) * torch.relu(a)
    P = (a > 0).to(a.dtype)
    alpha = torch.relu(r.sum((2, 3), keepdim=True))
    alphaP = torch.relu((r * P).sum((2, 3), keepdim=True))
    lc = torch.relu(cs(Sp))
    Rsp = torch.relu(cs(r))
    FGsp = torch.relu(cs(fg))
    ADJsp = torch.relu(cs(adj))
    fgalpha = torch.relu(fg.sum((2, 3), keepdim=True))
    return {
        "layercam": torch.relu(cs(S)),
        "layercam_pos": lc,
        "default": torch.relu(cs(alpha * S)),
        "default_pos": torch.relu(cs(alpha * Sp)),
        "alphaP_pos": torch.relu(cs(alphaP * Sp)),
        "sqrt_alphaP_pos": torch.relu(cs(alphaP.sqrt() * Sp)),
        "spatialR": Rsp,
        "lc_x_R": lc * Rsp,
        "chan_spatial": torch.relu(cs(Sp * torch.relu(r))),
        "fg_spatial": FGsp,
        "lc_x_fg": lc * FGsp,
        "fgalpha_pos": torch.relu(cs(fgalpha * Sp)),
        "adj_spatial": ADJsp,
        "lc_x_adj": lc * ADJsp,
        "gate_alphaP_pos": torch.relu(cs((alphaP > 0).to(a.dtype) * Sp)),
        "pow4_alphaP_pos": torch.relu(cs(alphaP.pow(0.25) * Sp)),
        "mass_alphaP_pos": torch.relu(
            cs(alphaP / (Sp.sum((2, 3), keepdim=True) + 1e-12) * Sp)
        ),
        "mass_sqrt_alphaP_pos": torch.relu(
            cs((alphaP / (Sp.sum((2, 3), keepdim=True) + 1e-12)).sqrt() * Sp)
        ),
        "density_alphaP_pos": torch.relu(
            cs(alphaP / (torch.relu(a).sum((2, 3), keepdim=True) + 1e-12) * Sp)
        ),
        "sqrt_density_alphaP_pos": torch.relu(
            cs((alphaP / (torch.relu(a).sum((2, 3), keepdim=True) + 1e-12)).sqrt() * Sp)
        ),
        "sqrt_fgalpha_pos": torch.relu(cs(fgalpha.sqrt() * Sp)),
        "sqrt_adjalpha_pos": torch.relu(
            cs(torch.relu(adj.sum((2, 3), keepdim=True)).sqrt() * Sp)
        ),
        "sqrt_x_fg": torch.relu(cs(alphaP.sqrt() * Sp)) * FGsp,
        "lc_x_fgP": lc * torch.relu(cs(fg * P)),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--step", type=int, default=3584)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--methods", default=None)
    p.add_argument("--stages", default=None, help="comma-separated; default all")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    loaded = load_model("efficientnet-lite0")
    model = loaded.model.to(memory_format=torch.channels_last)
    names = list(loaded.layers)
    layers = [loaded.layers[n] for n in names]
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    scores: dict[str, dict[str, list[float]]] = {}
    want = args.methods.split(",") if args.methods else None
    t0 = time.time()
    imgs: list[str] = []
    targets: list[int] = []
    settings = dict(
        vars(args),
        model="efficientnet-lite0",
        n_images=len(items),
        protocol=PROTOCOL,
        layers=[n for n in names if not args.stages or n in args.stages.split(",")],
        channels_last=True,
    )
    for inames, x, t in image_batches(items, loaded.preprocess, model, args.batch):
        imgs += inames
        targets += [int(v) for v in t]
        req = PushedDown()
        passes = compute_layer_passes(
            model, layers, x, target=t, check_conservation=False, refine=req
        )
        for i, name in enumerate(names):
            if args.stages and name not in args.stages.split(","):
                continue
            a, g, r = passes.activations[i], passes.gradients[i], passes.relevances[i]
            for m, mp in candidates(a, g, r, req.fg[i], req.adj[i]).items():
                if want and m not in want:
                    continue
                res = deletion_insertion(
                    model, x, mp.detach(), target=t, step=args.step
                )
                d = scores.setdefault(m, {}).setdefault(
                    name, {"deletion": [], "insertion": [], "overall": []}
                )
                d["deletion"] += res.deletion_auc.tolist()
                d["insertion"] += res.insertion_auc.tolist()
                d["overall"] += res.overall.tolist()
        print(f"{len(imgs)} images {time.time() - t0:.0f}s", flush=True)
        json.dump(
            {
                "settings": settings,
                "images": imgs,
                "targets": targets,
                "scores": scores,
            },
            open(args.out, "w"),
        )
    for ref in ("layercam", "layercam_pos"):
        print(f"\nΔ overall vs {ref}, {len(imgs)} images, step {args.step}")
        print(f"{'method':<18}" + "".join(f"{n:>20}" for n in names))
        for m in scores:
            if m == ref:
                continue
            cells = []
            for n in names:
                if n not in scores[ref]:
                    continue
                mean, _, lo, hi = paired_difference(
                    scores[m][n]["overall"], scores[ref][n]["overall"]
                )
                cells.append(f"{mean:+6.2f}[{lo:+5.1f},{hi:+5.1f}]")
            print(f"{m:<18}" + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
