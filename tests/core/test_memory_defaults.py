"""Importing dataselect sets numpy's and Arrow's memory defaults, unless the user chose them."""

import os
import subprocess
import sys

import pytest

ARROW = "import dataselect, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
# _set_madvise_hugepage returns the setting it replaces: the one importing dataselect left.
NUMPY = "import dataselect, numpy as np; print(np._core.multiarray._set_madvise_hugepage(True))"


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE")} | env
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True).stdout.strip()


def test_dataselect_uses_the_system_allocator_and_no_huge_pages_by_default():
    assert _run(ARROW) == "system"
    assert _run(NUMPY) == "False"


@pytest.mark.parametrize("pool", ["mimalloc", "jemalloc"])
def test_an_arrow_pool_the_user_names_is_kept(pool):
    import pyarrow as pa

    if pool not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {pool}")
    assert _run(ARROW, ARROW_DEFAULT_MEMORY_POOL=pool) == pool


def test_huge_pages_the_user_asks_numpy_for_are_kept():
    assert _run(NUMPY, NUMPY_MADVISE_HUGEPAGE="1") == "True"
