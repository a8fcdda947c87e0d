"""The ``skal`` quick start with a variant of the digits training recipe (the experiments of #24).

Runs :func:`skal.cli.main` with :func:`skal.recipes.training_recipe` wrapped so
that every learner's weight averaging is replaced (or another callback added),
then prints the CLI's table and the largest round-to-round drop of test accuracy
over the runs::

    python -m benchmarks.recipe_variants average 15    # AverageLastEpochs(15) (the recipe)
    python -m benchmarks.recipe_variants last          # the last epoch's weights, no averaging
    python -m benchmarks.recipe_variants cosine        # the last epoch's, cosine lr decay
    python -m benchmarks.recipe_variants none          # the recipe as it is

Arguments after the variant go to ``skal`` (e.g. ``--n-jobs 1 --out DIR``).
"""

import json
import sys
from pathlib import Path

import torch
from skorch.callbacks import LRScheduler

import skal.cli as cli
import skal.recipes as recipes


def variant_callback(name, arg, max_epochs):
    """The extra callback of a variant (None for ``"none"``)."""
    if name == "average":
        return recipes.AverageLastEpochs(int(arg))
    if name == "cosine":
        return LRScheduler(policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=max_epochs)
    if name in ("none", "last"):
        return None
    raise SystemExit(f"unknown variant {name!r}: average N, last, cosine or none.")


def largest_drops(results_json):
    """``[(drop, strategy, seed), ...]``, largest first, from a ``skal`` results.json."""
    runs = json.loads(Path(results_json).read_text(encoding="utf-8"))["runs"]
    drops = [(max(a[i] - a[i + 1] for i in range(len(a) - 1)), r["strategy"], r["random_state"])
             for r in runs for a in [r["accuracy"]]]
    return sorted(drops, reverse=True)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit(__doc__)
    name = argv.pop(0)
    arg = argv.pop(0) if name == "average" else None
    original = recipes.training_recipe

    def patched(dataset, **kwargs):
        net = original(dataset, **kwargs)
        callback = variant_callback(name, arg, net.max_epochs)
        if name != "none":  # every other variant replaces the recipe's averaging
            net.set_params(callbacks=[(n, c) for n, c in net.callbacks if n != "average"])
        if callback is not None:
            net.set_params(callbacks=[*net.callbacks, (f"variant_{name}", callback)])
        return net

    out = "skal-results"
    if "--out" in argv:
        out = argv[argv.index("--out") + 1]
    recipes.training_recipe = patched
    try:
        status = cli.main(argv)
    finally:
        recipes.training_recipe = original
    drops = largest_drops(Path(out) / "results.json")
    print("largest round-to-round drops (points):",
          ", ".join(f"{100 * d:.1f} ({s} seed {r})" for d, s, r in drops[:5]))
    print(f"runs with a drop above 3 points: {sum(d > 0.03 for d, _, _ in drops)} of {len(drops)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
