"""Scorer registry: adding a scorer is one module plus one line in ``SCORERS``.

Shard-stage scorers run per landing shard in ``quality_scores``; pool-stage scorers run once
over all shards in ``filtered_set`` (see :mod:`dataselect.scorers.base`).
"""

from dataselect.scorers.base import Batch, Scorer
from dataselect.scorers.color_filter import ColorFilter
from dataselect.scorers.dsir import DSIRImportance
from dataselect.scorers.duplicates import ExactDuplicates, MinHashSignatures, NearDuplicates
from dataselect.scorers.embeddable import Embeddable
from dataselect.scorers.heuristics import HeuristicRules
from dataselect.scorers.ids import UniqueIds
from dataselect.scorers.label_noise import LabelClassifier, LabelNoise
from dataselect.scorers.label_prior import LabelPrior
from dataselect.scorers.relevance import EmbeddingRelevance, NgramRelevance
from dataselect.scorers.semdedup import SemanticDuplicates

SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls
    for cls in [
        HeuristicRules,
        Embeddable,
        MinHashSignatures,
        DSIRImportance,
        EmbeddingRelevance,
        NgramRelevance,
        LabelPrior,
        LabelClassifier,
        ColorFilter,
        ExactDuplicates,
        NearDuplicates,
        SemanticDuplicates,
        LabelNoise,
        UniqueIds,
    ]
}

# The default recipe (chosen on the benchmarks' dev splits, see benchmarks/README.md).
# Fused relevance = embedding relevance + n-gram relevance + DSIR, plus half a weight on the
# label's out-of-fold probability (see SelectionConfig's default weights). label_prior estimates
# the target's label mix, which top_k follows as per-label quotas. label_classifier writes each
# shard's out-of-fold label probabilities, which label_noise reads across the pool.
DEFAULT_SHARD_SCORERS = ["heuristics", "embeddable", "minhash", "dsir", "relevance", "ngram_relevance", "label_prior", "label_classifier"]
DEFAULT_POOL_SCORERS = ["unique_id", "exact_dup", "near_dup", "semdedup", "label_noise"]

__all__ = ["Batch", "Scorer", "SCORERS", "DEFAULT_SHARD_SCORERS", "DEFAULT_POOL_SCORERS"]
