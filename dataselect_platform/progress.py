"""Progress of a build on stderr: per stage, its runs queued, running and done and its records
per second, as a tqdm bar on a terminal and as one line per finished run everywhere. A failed
run names its run id, so it can be opened in the UI, and the blocking checks that failed."""

import sys
import time

from tqdm import tqdm


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        tqdm.write(f"[dataselect] {message}", file=sys.stderr)


class BuildProgress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def stage(self, step, total: int) -> "StageProgress":
        return StageProgress(step, total, self.quiet)


class StageProgress:
    def __init__(self, step, total: int, quiet: bool):
        self.step, self.total, self.quiet = step, total, quiet
        self.records = self.finished = self.running = self.queued = 0
        self.started = time.perf_counter()
        self.bar = tqdm(
            total=total, desc=f"{step.stage:<16}", unit="run", file=sys.stderr, dynamic_ncols=True, disable=quiet or not sys.stderr.isatty()
        )

    def _state(self) -> str:
        seconds = time.perf_counter() - self.started
        per_second = self.records / seconds if seconds > 0 else 0.0
        # Records per second only where runs stream records: the per-shard stages.
        rate = f", {per_second:,.1f} records/s" if self.step.per_shard and self.records else ""
        return f"{self.finished}/{self.total} done, {self.running} running, {self.queued} queued{rate}"

    def update(self, queued: int, running: int) -> None:
        self.queued, self.running = queued, running
        self.bar.set_postfix_str(self._state())

    def done(self, run) -> None:
        self.records += run.records
        self.finished += 1
        self.running = max(0, self.running - 1)
        where = f"{self.step.job} [{run.partition}]" if run.partition else self.step.job
        if run.success:
            say(
                f"{where}: done in {run.seconds:.1f}s, {run.records:,} records, run {run.run_id} ({self.step.stage}: {self._state()})",
                self.quiet,
            )
        else:
            # Failures are printed even with --quiet: they are results, not progress.
            say(f"{where}: FAILED, run {run.run_id}: {run.error}")
            for check in run.failed_checks:
                say(f"  blocking check {check}")
        self.bar.update(1)
        self.bar.set_postfix_str(self._state())

    def retrying(self, run) -> None:
        where = f"{self.step.job} [{run.partition}]" if run.partition else self.step.job
        say(f"{where}: run {run.run_id} failed outside its steps ({run.error}); launching it once more")

    def close(self) -> None:
        self.bar.close()
        say(f"{self.step.stage}: {self.finished} run(s) in {time.perf_counter() - self.started:.1f}s ({self._state()})", self.quiet)
