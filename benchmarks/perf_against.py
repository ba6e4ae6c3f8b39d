"""This checkout's builds against a baseline commit's, interleaved in one series.

``python -m benchmarks.perf_against 97b829d --pool demo --repeats 3``

The 2-core machine these benchmarks run on drifts by 10-25% between series (the same code
measured an hour apart), so a change is judged against its baseline measured in the same minutes:
each repeat runs the baseline's build, then this checkout's, both cold (a fresh ``--out``), as
:mod:`benchmarks.perf` runs them (the command a user types, in a fresh process). The baseline is
a detached git worktree under ``benchmarks/work/perf/baseline-<commit>``; the interpreter imports
each side's platform from its working directory. Writes ``benchmarks/results/perf_against.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.perf import REPO, WORK, prepare_pool, run_build

RESULTS = REPO / "benchmarks" / "results" / "perf_against.md"


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def baseline_checkout(ref: str, work: Path = WORK) -> tuple[str, Path]:
    """(commit, folder) of a detached worktree at ``ref``, made once."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    folder = work / f"baseline-{commit[:7]}"
    if not (folder / ".git").exists():
        _git("worktree", "prune")  # forget worktrees whose folders are gone (e.g. a test's)
        _git("worktree", "add", "--detach", "--force", str(folder), commit)
    return commit, folder


def measure(ref: str, kind: str, size: int, repeats: int, budget: float, work: Path = WORK) -> list[dict]:
    """Cold builds, baseline then current in each repeat: one row per build."""
    commit, baseline = baseline_checkout(ref, work)
    pool = prepare_pool(kind, size, work)
    rows = []
    for repeat in range(repeats):
        for side, code in (("baseline", baseline), ("current", REPO)):
            out = work / "against" / f"{kind}-{size}-{side}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            result = run_build(pool, out, budget, out / "build.log", code=code)
            if result["returncode"] != 0:
                raise RuntimeError(f"{side} build failed ({result['returncode']}); see {out / 'build.log'}")
            records = result["summary"]["counts"]["raw"]  # the demo writes its own pool
            rows.append(
                {"pool": kind, "size": records, "side": side, "repeat": repeat, "seconds": result["seconds"], "load": os.getloadavg()[0]}
            )
            print(f"[against] {kind} n={records} repeat={repeat} {side}: {result['seconds']:.1f}s", flush=True)
    current = _git("rev-parse", "--short=7", "HEAD") + (" + changes" if _git("status", "--porcelain", "--untracked-files=no") else "")
    return [{**row, "commit": commit[:7] if row["side"] == "baseline" else current} for row in rows]


def markdown(rows: list[dict]) -> str:
    lines = [
        "# `dataselect build` against a baseline commit, interleaved (`python -m benchmarks.perf_against`)",
        "",
        "Cold builds (fresh `--out`), the baseline's then this checkout's in each repeat, so both see the same machine state. "
        "Wall clock of the whole command; median and range over repeats. Ratio = current / baseline.",
        "",
        "| pool | records | baseline | current | repeats | baseline s (median, range) | current s (median, range) | ratio |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for kind, size in sorted({(r["pool"], r["size"]) for r in rows}):
        sides = {side: [r for r in rows if (r["pool"], r["size"], r["side"]) == (kind, size, side)] for side in ("baseline", "current")}
        seconds = {side: [r["seconds"] for r in group] for side, group in sides.items()}
        median = {side: statistics.median(values) for side, values in seconds.items()}
        shown = {side: f"{median[side]:.1f} ({min(values):.1f}–{max(values):.1f})" for side, values in seconds.items()}
        lines.append(
            f"| {kind} | {size:,} | {sides['baseline'][0]['commit']} | {sides['current'][0]['commit']} | "
            f"{len(seconds['current'])} | {shown['baseline']} | {shown['current']} | {median['current'] / median['baseline']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="git ref of the baseline commit")
    parser.add_argument("--pool", nargs="+", default=["demo"], choices=["demo", "synthetic", "realtext"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for kind in args.pool:
        for size in [0] if kind == "demo" else args.sizes:
            rows += measure(args.baseline, kind, size, args.repeats, args.budget, args.work)
    text = markdown(rows)
    args.results.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
