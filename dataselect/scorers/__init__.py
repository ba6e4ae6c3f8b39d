"""Scorer registry: adding a scorer is one module plus one line in ``SCORERS``."""
