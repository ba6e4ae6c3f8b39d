"""The build's step order, written down once: which named job runs when, per shard or once, with what config.

``dataselect build``, the tests and the benchmarks run this plan through
``dataselect_platform.runner``; the landing sensor and the schedule launch the same jobs.
Each stage waits for the one before it (the models are fit on every shard's records and
embeddings, and the selection needs every shard's scores), unless it is marked
``with_previous``: it then shares the slots of the stage before it, as embedding the target
reference, which needs nothing from the pool, shares those of the shards' ingest.
"""

from dataclasses import dataclass, field

from dataselect.build_analyses import AnalysesConfig
from dataselect.threads import cores
from jobs import model_fit_job, selection_build_job, shard_embed_job, shard_score_job
from platform_assets.scoring import DEFAULT_MODEL_KEYS


@dataclass(frozen=True)
class BuildSettings:
    """What a build is asked for: the seed of the fits, the selection's and the report's config."""

    seed: int = 0
    selection: dict = field(default_factory=dict)  # filtered_set config (budget, policy, ...); its seed defaults to ``seed``
    report: dict | None = None  # evaluation_report config; None = its defaults
    analyses: dict | None = None  # evaluation_analyses config; None = its defaults
    with_report: bool = True  # False: the selection step builds filtered_set only (no report, no analyses)


ANALYSES = "evaluation_analyses"
# Runs that only serve the report's arms: a build without a labelled evaluation file trains none,
# so it leaves them out rather than start runs that skip (and take a slot and a core from the selection).
ARMS_ONLY = frozenset({"evaluation_features", "evaluation_full_pool_arm"})


@dataclass(frozen=True)
class Step:
    stage: str  # the name progress lines use
    job: str
    per_shard: bool
    # A global step's asset selections that run side by side, one run each (they must not depend
    # on one another); empty: the whole job in one run.
    side_by_side: tuple[tuple[str, ...], ...] = ()
    # Starts with the step before it and shares its run slots: it needs nothing that step makes.
    with_previous: bool = False
    # Assets whose run may use every core rather than its share: it outlasts the runs beside it, so
    # its threads take up the cores they leave (its own and theirs sharing them until then).
    every_core: tuple[str, ...] = ()

    def threads(self, assets: list[str] | None, share: int | None) -> int | None:
        """Threads of the step's run of ``assets``, given each run's ``share`` of the cores (None: no limit)."""
        if share is None or not assets or not set(assets) & set(self.every_core):
            return share
        return cores()

    def run_config(self, settings: BuildSettings, assets: list[str] | None = None, build_id: str | None = None) -> dict:
        """The run config of one of the step's runs, for its asset selection ``assets`` (None: all).
        ``build_id``: the build the selection step made, which a report in another run evaluates (the
        report would otherwise read the newest filtered_set, another build's when two run at once)."""
        ops = {}
        if self.job == model_fit_job.name:
            ops = {key: {"config": {"seed": settings.seed}} for key in DEFAULT_MODEL_KEYS}
        if self.job == selection_build_job.name:
            ops = {"filtered_set": {"config": {"seed": settings.seed, **settings.selection}}}
            for key, config in (("evaluation_report", settings.report), (ANALYSES, settings.analyses)):
                merged = {**(config or {}), **({"build_id": build_id} if build_id else {})}
                if settings.with_report and (config is not None or merged):
                    ops[key] = {"config": merged}
        ops = {key: config for key, config in ops.items() if assets is None or key in assets}
        return {"ops": ops} if ops else {}

    def runs(
        self, settings: BuildSettings, shards: list[str], pool_records: int | None = None, trains_arms: bool = True
    ) -> list[tuple[str | None, list[str] | None]]:
        """(partition, asset selection) of each of the step's runs: one per shard of ``shards`` for a
        per-shard step, one per asset group for a global one (selection None: all of the job's assets).
        ``pool_records``: the build's records once its selection is made; at sizes where the analyses'
        config runs nothing, their run is left out, so the report's run has the cores to itself.
        ``trains_arms``: whether the build has a labelled evaluation file (else :data:`ARMS_ONLY` runs are left out)."""
        if self.per_shard:
            return [(key, None) for key in shards]
        groups = self.side_by_side or (None,)
        if not trains_arms:
            groups = tuple(group for group in groups if group is None or not set(group) <= ARMS_ONLY)
        if pool_records is not None and not AnalysesConfig.from_options(settings.analyses or {}).runs_anything(pool_records):
            groups = tuple(group for group in groups if group is None or ANALYSES not in group)
        if self.job == selection_build_job.name and not settings.with_report:
            # The selection alone, in the step that makes it; steps that only serve the report are skipped.
            return [(None, ["filtered_set"])] if any(group is None or "filtered_set" in group for group in groups) else []
        return [(None, None if group is None else list(group)) for group in groups]


# The model fits are independent of one another once the target is embedded: two runs share the
# cores. label_classifier's fold models cost about as much as the other four fits together (at
# 20k synthetic records 6.0 s, against 0.3-0.9 s each), so it has a run of its own, which fits its
# folds on every core (the other fits end first, and their core would idle). A model the
# first run does not name joins the second.
_FIRST_FITS = ("label_classifier_model",)
_FITS_SIDE_BY_SIDE = tuple(
    group
    for group in (
        tuple(key for key in DEFAULT_MODEL_KEYS if key in _FIRST_FITS),
        tuple(key for key in DEFAULT_MODEL_KEYS if key not in _FIRST_FITS),
    )
    if group
)

BUILD_PLAN = (
    Step("ingest + embed", shard_embed_job.name, per_shard=True),
    Step("embed target", model_fit_job.name, per_shard=False, side_by_side=(("target_reference",),), with_previous=True),
    Step("fit models", model_fit_job.name, per_shard=False, side_by_side=_FITS_SIDE_BY_SIDE, every_core=_FIRST_FITS),
    # Counting the pool's terms for the report needs nothing but the pool: it takes one run slot while
    # the shards are scored in the other, queued first (the longest run of the wave).
    Step("count terms", selection_build_job.name, per_shard=False, side_by_side=(("evaluation_features",),)),
    Step("score", shard_score_job.name, per_shard=True, with_previous=True),
    # The full pool's arm needs only the counts: it trains beside the selection, on every core (the
    # selection ends first; beside the scoring the arm took 15 s of a slot at 100k real-text records).
    Step(
        "select",
        selection_build_job.name,
        per_shard=False,
        side_by_side=(("evaluation_set", "filtered_set"), ("evaluation_full_pool_arm",)),
        every_core=("evaluation_full_pool_arm",),
    ),
    # The budget sweep and the ablation need nothing from the report: they run beside it.
    Step("report", selection_build_job.name, per_shard=False, side_by_side=(("evaluation_report",), (ANALYSES,))),
)


def waves(plan: tuple[Step, ...] = BUILD_PLAN) -> list[tuple[Step, ...]]:
    """The plan's steps in the groups that run together: a wave's runs share the run slots, and
    the next wave starts once all of them have ended."""
    grouped: list[list[Step]] = []
    for step in plan:
        if step.with_previous and grouped:
            grouped[-1].append(step)
        else:
            grouped.append([step])
    return [tuple(group) for group in grouped]
