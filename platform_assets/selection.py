"""filtered_set: the budgeted, versioned selection over every shard, with one decision per raw record."""

import dataclasses
import json
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)
from pydantic import Field

from dataselect import records as cols
from dataselect.build import (
    build_id_for,
    decontamination_version,
    make_manifest,
    score_for_selection,
    with_decontamination,
    write_build,
)
from dataselect.pipeline import fingerprint, make_scorers
from dataselect.scorers import DEFAULT_POOL_SCORERS
from dataselect.scorers.label_noise import LabelNoise
from dataselect.selection import POLICIES, SelectionConfig, accounting, decide
from dataselect.shard_pool import ShardColumns
from dataselect.storage import parquet_metadata, read_parquet
from dataselect.tuning import tune_build, tune_table
from platform_assets.embeddings import embeddings
from platform_assets.ingest import raw_pool
from platform_assets.metadata import table_preview
from platform_assets.partitions import shards
from platform_assets.scoring import DECONTAMINATED_AGAINST, MODELS, SCORED_WITH, evaluation_records, quality_scores
from resources import InputsResource, StorageResource

_DEFAULTS = SelectionConfig()
LABEL_NOISE_DEFAULTS = LabelNoise.Config()


class SelectionBuildConfig(Config):
    budget: float = Field(_DEFAULTS.budget, description="≤ 1: fraction of all raw records; > 1: a record count.")
    policy: str = Field(_DEFAULTS.policy, description=" | ".join(POLICIES))
    seed: int = Field(_DEFAULTS.seed, description="Seed for every random choice of the build.")
    weights: dict[str, float] = Field(default_factory=lambda: dict(SelectionConfig().weights), description="Score column -> fusion weight.")
    normalization: str = Field(_DEFAULTS.normalization, description="rank | zscore, applied per score before fusion.")
    threshold: float | None = Field(_DEFAULTS.threshold, description="Fused-score threshold for the threshold policy.")
    hard_filters: list[str] | None = Field(_DEFAULTS.hard_filters, description="Scorers whose '<name>.keep' rejects; None = all.")
    n_clusters: int | None = Field(_DEFAULTS.n_clusters, description="Cluster policies: k-means clusters; None = sqrt(candidates).")
    kmeans_niter: int = Field(_DEFAULTS.kmeans_niter, description="Cluster policies: k-means iterations.")
    candidate_factor: float | None = Field(
        _DEFAULTS.candidate_factor, description="cluster_balanced: balance among the top factor*k by fused score; None = all."
    )
    ccs_beta: float = Field(_DEFAULTS.ccs_beta, description="ccs: fraction of the hardest candidates pruned first.")
    ccs_strata: int = Field(_DEFAULTS.ccs_strata, description="ccs: number of equal-width difficulty strata.")
    difficulty_column: str | None = Field(
        _DEFAULTS.difficulty_column, description="ccs: difficulty score column (higher = harder); None = -fused."
    )
    log_weight_column: str = Field(_DEFAULTS.log_weight_column, description="gumbel_top_k: the log importance weight column.")
    sensitivity_power: float = Field(_DEFAULTS.sensitivity_power, description="sensitivity: cost = distance ** power.")
    sensitivity_uniform_mix: float = Field(
        _DEFAULTS.sensitivity_uniform_mix, description="sensitivity: uniform share of the sampling probability."
    )
    label_quota_column: str | None = Field(
        _DEFAULTS.label_quota_column,
        description="top_k: per-label quotas from this column (the target's share of each label); None = one ranking over all labels.",
    )
    pool_scorers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_POOL_SCORERS), description="Pool-stage scorers (duplicates, clusters, label noise)."
    )
    pool_scorer_options: dict = Field(default_factory=dict, description="Per pool scorer Config overrides.")
    tune: bool = Field(
        False,
        description="Choose the recipe per build: split the labelled evaluation file into tune / held-out halves, "
        "try the grid of dataselect.tuning on the tune half, keep the best; the manifest records the grid.",
    )
    task: str | None = Field(
        None,
        description="classification (an unlabelled record is rejected before the budget) | language_modeling (labels ignored); "
        "None: classification when a labelled evaluation file is configured, else language_modeling.",
    )

    def selection(self, has_evaluation: bool = False) -> SelectionConfig:
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(SelectionConfig) if field.name != "task"}
        task = self.task or ("classification" if has_evaluation else "language_modeling")
        return SelectionConfig(**fields, task=task)


def _shard_keys(context: AssetExecutionContext, storage: StorageResource) -> list[str]:
    keys = sorted(context.instance.get_dynamic_partitions(shards.name))
    missing = [k for k in keys if k not in storage.shard_files("quality_scores")]
    if missing:
        raise Failure(f"shards without quality_scores: {missing}; materialize them before the selection build")
    if not keys:
        raise Failure("no shards: add files to the landing directory (the landing sensor registers them)")
    return keys


class Snapshot(NamedTuple):
    """The shard versions a build reads, and the one scoring version every shard's scores share."""

    shards: dict[str, str]  # shard -> raw file fingerprint
    scored_with: str | None  # None: scores written before scoring versions were recorded
    models: dict[str, str]  # fitted model -> version, as the scores record them
    decontaminated_against: set[str | None]  # every shard's decontamination_version (None: found against none)


def _snapshot(storage: StorageResource, keys: list[str]) -> Snapshot:
    """Each shard's raw file fingerprint, after checking its scores were computed from that version,
    and that every shard was scored with the same scorers, settings and fitted models: a shard
    scored before a model was refit ranks against the others on another scale."""
    fingerprints, shards_of, models_of, decontaminated_against = {}, {}, {}, set()
    for key in keys:
        raw = parquet_metadata(storage.shard_file("raw_pool", key))["fingerprint"]
        scores = parquet_metadata(storage.shard_file("quality_scores", key))
        if scores.get("fingerprint") != raw:
            raise Failure(
                f"shard {key!r}: quality_scores were computed from another version of the file; rescore it first",
                allow_retries=False,
            )
        fingerprints[key] = raw
        version = scores.get(SCORED_WITH)  # covers the models' versions; MODELS spells them out
        shards_of.setdefault(version, []).append(key)
        models_of.setdefault(version, json.loads(scores.get(MODELS, "{}")))
        decontaminated_against.add(scores.get(DECONTAMINATED_AGAINST))
    if len(shards_of) > 1:
        groups = "; ".join(
            f"{len(shards)} shard(s) ({', '.join(shards[:3])}{', …' if len(shards) > 3 else ''}) with models {models_of[version]}"
            for version, shards in sorted(shards_of.items(), key=lambda item: -len(item[1]))
        )
        raise Failure(
            f"shards were scored with different scorers, settings or fitted models: {groups}. Rescore every shard "
            "(materialize quality_scores for all partitions) so their scores are comparable.",
            allow_retries=False,
        )
    version = next(iter(shards_of), None)
    return Snapshot(fingerprints, version, models_of.get(version, {}), decontaminated_against)


def _read_scores(storage: StorageResource, keys: list[str]) -> tuple[pa.Table, ShardColumns]:
    """Every shard's scores without their wide columns (a list per record), and those columns left in the
    files: a pool scorer reads the one it needs while it runs (at 1M records the MinHash signatures
    are 0.5 GB and the label probabilities 0.2 GB, and no scorer needs both)."""
    wide = ShardColumns([storage.shard_file("quality_scores", k) for k in keys])
    tables = [read_parquet(path, [n for n in schema.names if n not in wide.names]) for path, schema in zip(wide.files, wide.schemas)]
    return pa.concat_tables(tables, promote_options="permissive"), wide


def _shard_texts(storage: StorageResource, key: str) -> pa.Array:
    return storage.read_shard("raw_pool", key, [cols.TEXT]).column(cols.TEXT).combine_chunks().cast(pa.string())


@asset(
    deps=[quality_scores, raw_pool, embeddings],
    # Rebuild once every shard's scores are in place after any of them changed.
    automation_condition=AutomationCondition.eager(),
    retry_policy=RetryPolicy(max_retries=2, delay=10),
    group_name="select",
    kinds={"python", "parquet"},
    description="The selected training set under a budget: hard filters first (quarantine, duplicates, failed heuristics, "
    "label noise), then the policy on the fused score. Writes the selected records, a decisions table with one row per "
    "raw record (status, deciding scorer, reason, scores) and a manifest, under builds/<build id>/.",
)
def filtered_set(
    context: AssetExecutionContext, config: SelectionBuildConfig, storage: StorageResource, inputs: InputsResource
) -> MaterializeResult:
    keys = _shard_keys(context, storage)
    selection = config.selection(has_evaluation=inputs.evaluation() is not None)
    scores, stored = _read_scores(storage, keys)
    quarantine = pd.concat([storage.read_shard("quarantine", k).to_pandas() for k in keys], ignore_index=True)
    vectors = storage.read_pool_embeddings(keys)
    snapshot = _snapshot(storage, keys)
    evaluation = evaluation_records(inputs)
    texts = None
    # The whole pool's text is held only for label noise on TF-IDF when the shards' scores lack its
    # label_classifier probabilities, and for --tune (it trains arms); decontamination reads one shard's at a time.
    names = scores.column_names + stored.names
    needs_text = any(s.needs_text_given(names) for s in make_scorers(config.pool_scorers, config.pool_scorer_options))
    if needs_text or (config.tune and evaluation is not None):
        # One Arrow array, no Python strings: at 1M records a list of them held 2.5 GB beside the 1.4 GB of text.
        texts = pa.concat_arrays([_shard_texts(storage, k) for k in keys])
    text_parts = (_shard_texts(storage, k) for k in keys)
    # Found per shard when it was scored, against this evaluation set: no text is read for it here.
    decontaminated = evaluation is not None and snapshot.decontaminated_against == {decontamination_version(evaluation)}
    frame = score_for_selection(
        scores, vectors, config.pool_scorers, config.pool_scorer_options, texts, evaluation, text_parts, stored, decontaminated
    )
    del scores  # the frame holds its columns
    selection = with_decontamination(selection, frame)
    if not (config.tune or POLICIES[selection.policy].needs_embeddings):
        vectors = None  # the pool scorers are done with them (1 GB at 1M records); top-k never reads them
    tuned = None
    if config.tune:
        label_noise = config.pool_scorer_options.get("label_noise", {})
        strength = label_noise.get("min_self_confidence", LABEL_NOISE_DEFAULTS.min_self_confidence)
        top_label = label_noise.get("require_top_label", LABEL_NOISE_DEFAULTS.require_top_label)
        try:
            tuned = tune_build(frame, quarantine, vectors, texts, evaluation, selection, strength, top_label)
        except ValueError as error:
            raise Failure(str(error), allow_retries=False) from error
        decisions = tuned.decisions
        context.log.info(f"tune: chose {tuned.chosen.name!r} of {len(tuned.grid)} recipes")
    else:
        decisions = decide(frame, quarantine, selection, vectors)

    evaluation_fingerprint = fingerprint(evaluation[cols.ID].tolist(), evaluation[cols.TEXT].tolist()) if evaluation is not None else None
    build_id = build_id_for(
        selection,
        config.pool_scorers,
        config.pool_scorer_options,
        snapshot.shards,
        evaluation_fingerprint if not tuned else fingerprint(evaluation_fingerprint, "tune"),
        snapshot.scored_with,
    )
    # By (shard, row), not id: ids repeated across shards must not select both copies.
    chosen = decisions.loc[decisions[cols.STATUS] == cols.SELECTED].groupby(cols.SHARD)[cols.ROW].apply(list).to_dict()
    selected = pa.concat_tables(
        [
            storage.read_shard("raw_pool", k).filter(
                pc.is_in(storage.read_shard("raw_pool", k, [cols.ROW]).column(cols.ROW), value_set=pa.array(chosen.get(k, []), pa.int64()))
            )
            for k in keys
        ],
        promote_options="permissive",
    ).replace_schema_metadata(None)  # drop the first shard's file metadata (its source path and hash)
    if _snapshot(storage, keys) != snapshot:
        raise Failure("a shard was refreshed while this build read it; the retry reads a consistent snapshot")
    extra = {"tune": tuned.summary()} if tuned else None
    scored_with = {"version": snapshot.scored_with, "models": snapshot.models}
    manifest = make_manifest(
        build_id, selection, config.pool_scorers, config.pool_scorer_options, snapshot.shards, decisions, extra, scored_with
    )
    paths = write_build(storage.root_path(), build_id, decisions, selected, manifest)
    counts = accounting(decisions)
    context.log.info(f"build {build_id}: {counts}")
    return MaterializeResult(
        metadata={
            "build_id": build_id,
            "dagster/row_count": selected.num_rows,
            "raw": counts["raw"],
            "selected": counts["selected"],
            "rejected": counts["rejected"],
            "quarantined": counts["quarantined"],
            "task": selection.task,
            "decontaminated": counts["rejections_by_reason"].get("decontamination", 0),
            **({"tune_grid": MetadataValue.md(tune_table(tuned.grid))} if tuned else {}),
            "rejections_by_scorer": MetadataValue.json(counts["rejections_by_reason"]),
            "selected_path": MetadataValue.path(paths["selected"]),
            "decisions_path": MetadataValue.path(paths["decisions"]),
            "manifest": MetadataValue.json(manifest),
            "decisions_preview": MetadataValue.md(
                table_preview(decisions[decisions[cols.STATUS] != cols.SELECTED], [cols.ID, cols.STATUS, cols.DECIDED_BY, cols.REASON])
            ),
        }
    )
