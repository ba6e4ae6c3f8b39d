"""What ``--tune`` costs: ``dataselect build`` on one pool with and without ``--tune``.

``python -m benchmarks.tune_cost [--records 20000]``. The pool is the synthetic demo corpus
(:func:`dataselect.demo.write_demo`, seeded) at ``--records`` clean records (corruption adds about
18%), with its labelled evaluation file. Each build runs in a fresh process, instance and store
(static embeddings, the default report), so both pay for everything: ingest, embeddings, scoring,
the selection (plus the tune grid) and the report. Writes ``benchmarks/results/tune.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.newsgroups import REPO, WORK_DIR
from dataselect.demo import write_demo
from dataselect.selection import SelectionConfig
from dataselect.tuning import TUNE_FRACTION, grid

RESULTS = REPO / "benchmarks" / "results" / "tune.md"
BUDGET = 0.1


def build(paths, out: Path, tune: bool) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "dataselect_platform.cli",
        "build",
        "--landing",
        str(paths.landing),
        "--reference",
        str(paths.reference),
        "--eval",
        str(paths.evaluation),
        "--budget",
        str(BUDGET),
        "--seed",
        "0",
        "--backend",
        "static",
        "--out",
        str(out),
        *(["--tune"] if tune else []),
    ]
    env = {**os.environ, "DAGSTER_HOME": str(out / "dagster_home")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed ({'tune' if tune else 'plain'}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="clean demo records before corruption")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = WORK_DIR / f"tune-cost-{args.records}"
    paths = write_demo(work / "data", seed=0, n_records=args.records, n_shards=4)
    plain_seconds, plain = build(paths, work / "plain", tune=False)
    tuned_seconds, tuned = build(paths, work / "tuned", tune=True)
    manifest = json.loads(Path(tuned["manifest"]).read_text())["config"]["tune"]
    ratio = tuned_seconds / plain_seconds
    lines = [
        "# What `--tune` costs",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: 2 CPU cores (shared), {platform.machine()}, Python {platform.python_version()}. "
        f"Command: `python -m benchmarks.tune_cost --records {args.records}`.",
        "",
        f"Pool: the synthetic demo corpus at {args.records} clean records ({plain['counts']['raw']} raw rows after corruption), "
        f"budget {BUDGET:.0%}, static embeddings, the default report. Each build in a fresh process, instance and store. "
        f"`--tune` halves the evaluation file ({TUNE_FRACTION:.0%} tune: {manifest['tune_size']} records, held out: "
        f"{manifest['held_out_size']}) and tries {len(grid(SelectionConfig()))} recipes (`dataselect.tuning`).",
        "",
        "| build | wall s | selected | held-out accuracy |",
        "|---|---:|---:|---:|",
        f"| plain (default recipe) | {plain_seconds:.0f} | {plain['counts']['selected']} | {manifest['default_held_out_accuracy']:.3f} |",
        f"| `--tune` (chose {manifest['chosen']}) | {tuned_seconds:.0f} | {tuned['counts']['selected']} | {manifest['held_out_accuracy']:.3f} |",
        f"| ratio | **{ratio:.2f}×** | | target ≤ 3× |",
        "",
        "Held-out accuracies are both measured on the held-out half by the tune grid (the default is the grid's first row).",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
