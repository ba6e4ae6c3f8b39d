"""Column names and record states shared by every stage (one place, so stages agree)."""

ID = "id"
TEXT = "text"
LABEL = "label"
CONTENT_HASH = "content_hash"  # sha1 of the normalised text, hex
SHARD = "shard"  # partition key of the landing file the record came from
ROW = "row"  # 0-based line or row number inside its shard

# Quarantine table columns: one row per raw line/row that could not become a record.
ERROR = "error"
RAW_EXCERPT = "raw_excerpt"

# Decisions: every raw record ends in exactly one of these states.
SELECTED = "selected"
REJECTED = "rejected"
QUARANTINED = "quarantined"
STATUS = "status"
REASON = "reason"  # human-readable why, e.g. "heuristics: mean_word_length 1.2 < 3"
DECIDED_BY = "decided_by"  # scorer or policy name that made the decision
FUSED_SCORE = "fused_score"
