"""The build's step order, written down once: which named job runs when, per shard or once, with what config.

``dataselect build``, the tests and the benchmarks run this plan through
``dataselect_platform.runner``; the landing sensor and the schedule launch the same jobs.
Each stage waits for the one before it: the models are fit on every shard's records and
embeddings, and the selection needs every shard's scores.
"""

from dataclasses import dataclass, field

from jobs import model_fit_job, selection_build_job, shard_embed_job, shard_score_job
from platform_assets.scoring import DEFAULT_MODEL_KEYS


@dataclass(frozen=True)
class BuildSettings:
    """What a build is asked for: the seed of the fits, the selection's and the report's config."""

    seed: int = 0
    selection: dict = field(default_factory=dict)  # filtered_set config (budget, policy, ...); its seed defaults to ``seed``
    report: dict | None = None  # evaluation_report config; None = its defaults
    with_report: bool = True  # False: the selection step builds filtered_set only


@dataclass(frozen=True)
class Step:
    stage: str  # the name progress lines use
    job: str
    per_shard: bool

    def run_config(self, settings: BuildSettings) -> dict:
        if self.job == model_fit_job.name:
            return {"ops": {key: {"config": {"seed": settings.seed}} for key in DEFAULT_MODEL_KEYS}}
        if self.job == selection_build_job.name:
            ops = {"filtered_set": {"config": {"seed": settings.seed, **settings.selection}}}
            if settings.with_report and settings.report is not None:
                ops["evaluation_report"] = {"config": settings.report}
            return {"ops": ops}
        return {}

    def assets(self, settings: BuildSettings) -> list[str] | None:
        """The subset of the job's assets to run; None for all of them."""
        if self.job == selection_build_job.name and not settings.with_report:
            return ["filtered_set"]
        return None


BUILD_PLAN = (
    Step("ingest + embed", shard_embed_job.name, per_shard=True),
    Step("fit models", model_fit_job.name, per_shard=False),
    Step("score", shard_score_job.name, per_shard=True),
    Step("select + report", selection_build_job.name, per_shard=False),
)
