"""How far can any selection go? Ground-truth selections beside the default recipe.
``python -m benchmarks.selection_ceiling``.

The methods benchmark asks whether the default recipe reaches a fixed test accuracy. This script
asks what a perfect selector would score on the same pool, budget, recipe and splits: it reads the
ground truth that no selection may read (the planted corruptions and the target domain) to build
*perfect* selections (in target, label not flipped, not junk, one record per duplicate family) and
trains the methods benchmark's evaluation recipe (chosen on dev, as there) on them:

- many random draws of budget size from the perfect records: how much the accuracy of a flawless
  selection moves with which flawless records it holds;
- the default recipe with one of its imperfect parts replaced by the ground truth: its filters
  (only the perfect records pass, ranked by the default's fused score within its label quotas),
  or its ranking (after the default's own filters, in-target records first, then its fused order).

Nothing here is a choice: no recipe is picked from these numbers, so reading test is allowed; it
measures whether a test-accuracy target lies within reach of selection at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.methods import (
    ALL_FILTERS,
    RESULTS_DIR,
    TARGETS,
    TITLES,
    BenchConfig,
    Context,
    _fmt,
    _model_name,
    choose_model,
    default_recipe,
    log_line,
    oracle_accuracy,
    run_default,
    selected_ids,
    train,
)
from benchmarks.methods import prepare_corpus as prepare_methods_corpus
from benchmarks.newsgroups import CORPORA, IN_TARGET
from dataselect import records as cols
from dataselect.corruption import IS_FLIPPED, IS_JUNK, SOURCE_ID
from dataselect.selection import decide, fuse

PERFECT = "perfect"  # the ground-truth filter's name: perfect.keep
GROUND_TRUTH_RANK = "ground_truth.rank"


def perfect_mask(ctx: Context) -> np.ndarray:
    """Per pool record (frame order): in target, label as given is true, not junk, and the first of
    its duplicate family."""
    truth = ctx.truth.loc[ctx.frame[cols.ID].astype(str)]
    clean = truth[IN_TARGET].astype(bool) & ~truth[IS_FLIPPED].astype(bool) & ~truth[IS_JUNK].astype(bool)
    first_of_family = ~truth[SOURCE_ID].where(clean).duplicated() & clean
    return first_of_family.to_numpy(bool)


def random_perfect_draws(ctx: Context, perfect: np.ndarray, seeds: range) -> list[tuple[float, float]]:
    """(dev, test) accuracy of budget-sized random draws from the perfect records (``perfect``: :func:`perfect_mask`)."""
    ids = ctx.frame[cols.ID].astype(str).to_numpy()[perfect]
    k = min(ctx.k, len(ids))
    return [train(ctx, list(np.random.default_rng(seed).choice(ids, k, replace=False)), "perfect", seed) for seed in seeds]


def default_with_ground_truth(ctx: Context, config: BenchConfig, perfect: np.ndarray) -> dict[str, list[str]]:
    """The default recipe's selection with its filters (``perfect``: :func:`perfect_mask`) or its ranking from the ground truth."""
    default = dataclasses.replace(default_recipe(config.seed).selection, budget=config.budget, hard_filters=ALL_FILTERS)
    frame = ctx.frame.copy()
    frame[f"{PERFECT}.keep"] = perfect
    in_target = ctx.truth.loc[frame[cols.ID].astype(str), IN_TARGET].to_numpy(bool)
    # In-target records first; among them (and among the rest) the default's own fused order.
    fused = pd.Series(fuse(frame, default.weights, default.normalization)).rank(pct=True).to_numpy()
    frame[GROUND_TRUTH_RANK] = in_target + 1e-3 * fused
    ranked = {GROUND_TRUTH_RANK: 1.0}
    variants = {
        "default recipe, ground-truth filters": dataclasses.replace(default, hard_filters=[PERFECT]),
        "default recipe's filters, ground-truth ranking": dataclasses.replace(default, weights=ranked),
    }
    return {name: selected_ids(decide(frame, ctx.bench.quarantine, selection, ctx.embeddings)) for name, selection in variants.items()}


def run_corpus(config: BenchConfig, corpus: str, draws: int, path: str | Path | None = None) -> dict[str, Any]:
    """The corpus's rows (``path``: its data folder; None: the default)."""
    config, ctx, scores, timer = prepare_methods_corpus(config, corpus, path, log_line)
    model, _ = choose_model(ctx, config, lambda line: None)
    default_row, _ = run_default(ctx, scores, timer, config)
    rows = [{"arm": "default recipe", "dev": default_row["dev"], "test": default_row["test"], "in_target": default_row["in_target"]}]
    perfect = perfect_mask(ctx)
    for name, ids in default_with_ground_truth(ctx, config, perfect).items():
        dev, test = train(ctx, ids, name)
        rows.append({"arm": name, "dev": dev, "test": test, "in_target": float(ctx.truth.loc[ids, IN_TARGET].mean())})
    draws_of_perfect = random_perfect_draws(ctx, perfect, range(1, draws + 1))
    oracle = [oracle_accuracy(ctx, seed) for seed in range(1, draws + 1)]
    return {
        "corpus": corpus,
        "k": ctx.k,
        "n_perfect": int(perfect.sum()),
        "n_dev": len(ctx.bench.dev),
        "n_test": len(ctx.bench.test),
        "model": _model_name(model),
        "rows": rows,
        "perfect": draws_of_perfect,
        "oracle": oracle,
    }


def spread(values: list[float], target: float) -> str:
    values = np.asarray(values)
    return (
        f"{np.median(values):.3f} | {values.min():.3f}–{values.max():.3f} | "
        f"{np.percentile(values, 10):.3f}–{np.percentile(values, 90):.3f} | {int((values >= target).sum())} of {len(values)}"
    )


def render(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# How far can any selection go? (ground-truth selections)",
        "",
        f"Date: {datetime.date.today()}. Machine: Python {platform.python_version()}. Command: `{command}`.",
        "",
        "Same pools, budgets, reference/dev/test splits and evaluation recipe (chosen on dev) as "
        "`methods.py`. A *perfect* record is in the target, carries its true label, is not junk and is "
        "the first of its duplicate family: the ground truth that no selection may read. Nothing here is "
        "chosen from these numbers.",
    ]
    for result in results:
        target = TARGETS[result["corpus"]]
        lines += [
            "",
            f"## {TITLES[result['corpus']]}",
            "",
            f"Budget {result['k']} records; {result['n_perfect']} perfect records in the pool; dev {result['n_dev']}, "
            f"test {result['n_test']}; evaluation recipe {result['model']}; issue 11's target: test accuracy ≥ {target}.",
            "",
            "| draws of budget size | n | median test | min–max test | 10th–90th percentile | draws ≥ target | median dev |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, pairs in (("random perfect records from the pool", result["perfect"]), ("clean in-target oracle", result["oracle"])):
            dev, test = zip(*pairs)
            lines.append(f"| {name} | {len(pairs)} | {spread(list(test), target)} | {np.median(dev):.3f} |")
        lines += ["", "| selection | dev | test | in target |", "|---|---:|---:|---:|"]
        lines += [f"| {row['arm']} | {_fmt(row['dev'])} | {_fmt(row['test'])} | {row['in_target']:.1%} |" for row in result["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=CORPORA, action="append", help="only this corpus (repeatable; default: all)")
    parser.add_argument("--draws", type=int, default=20, help="random draws of perfect records (and of the oracle)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "selection_ceiling.md")
    args = parser.parse_args(argv)
    config = BenchConfig(include_color=False)  # no row here reads CoLoR-Filter's score
    results = [run_corpus(config, corpus, args.draws) for corpus in args.corpus or CORPORA]
    markdown = render(results, "python -m benchmarks.selection_ceiling " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(markdown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
