"""dataselect: the Dagster-free core of the training-data selection platform.

Everything here is plain Python over Arrow, pandas and numpy, usable without Dagster:
ingest shards, embed, score, select under a budget, evaluate and report.
"""

__version__ = "0.1.0"
