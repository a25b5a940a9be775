"""``python -m app.training <recipe>|all|list`` and ``quantize MODEL`` (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.training import quantize
from app.training.progress import setup_logging
from app.training.recipe import PROFILES
from app.training.recipes import RECIPES
from app.training.reproducibility import DEFAULT_SEED
from app.training.runner import default_order, run_missing, run_recipe


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quantize"]:
        return quantize.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m app.training", description=__doc__)
    parser.add_argument("recipe", help=f"one of {', '.join(sorted(RECIPES))}, 'all' (missing models), 'list', "
                        "or 'quantize MODEL' (an int8 version; see python -m app.training quantize --help)")
    parser.add_argument("--profile", choices=PROFILES, default="full", help="smoke: seconds-long run on a subset")
    parser.add_argument("--data", type=Path, default=None, help="your own data in the recipe's documented format")
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--quantize", action="store_true", help="then write an int8 copy as the next version")
    args = parser.parse_args(argv)
    setup_logging()

    if args.recipe == "list":
        for name in default_order():
            recipe = RECIPES[name]
            print(f"{name:16} -> {recipe.name:30} ~{recipe.expected_minutes:g} min  {recipe.source.name} ({recipe.source.licence})")
        return 0
    if args.recipe == "all":
        if args.data is not None:
            parser.error("--data applies to one recipe, not to 'all'")
        outcome = run_missing(args.repository, args.profile)
        for model, state in outcome.items():
            print(f"{model}: {state}")
        return 1 if any(state.startswith("failed") for state in outcome.values()) else 0
    if args.recipe not in RECIPES:
        parser.error(f"unknown recipe {args.recipe!r}; known: {', '.join(sorted(RECIPES))}")
    if args.quantize and RECIPES[args.recipe].quantization is None:
        parser.error(f"{args.recipe} has no int8 method; --quantize applies to recipes "
                     f"{', '.join(sorted(n for n, r in RECIPES.items() if r.quantization))}")
    print(run_recipe(args.recipe, profile=args.profile, data_path=args.data, repository=args.repository, seed=args.seed))
    if args.quantize:
        print(quantize.quantize(RECIPES[args.recipe].name, args.repository))
    return 0


if __name__ == "__main__":
    sys.exit(main())
