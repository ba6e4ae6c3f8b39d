"""The environment variables a resource falls back to when it is not configured explicitly.

They are read when a resource is used, inside the run, never when the code location is
imported: a run picks up the environment it runs in, and a fresh checkout works with no
configuration (SQLite instance, files under ./data).
"""

import os

DEFAULTS = {
    "DATASELECT_LANDING": "data/landing",
    "DATASELECT_REFERENCE": "data/reference.jsonl",
    "DATASELECT_EVAL": "data/eval.jsonl",
    "DATASELECT_STORE": "data/store",
    "DATASELECT_EMBEDDING_BACKEND": "auto",
    "DATASELECT_DEVICE": "auto",
}


def setting(explicit: str | None, variable: str) -> str:
    """``explicit`` when the resource was configured, else the environment variable, else its default."""
    return explicit if explicit is not None else os.environ.get(variable, DEFAULTS[variable])
