"""Importing dataselect switches Arrow to the C library's allocator, unless the user chose a pool."""

import os
import subprocess
import sys

import pytest

PROBE = "import dataselect, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _backend(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    return subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True).stdout.strip()


def test_dataselect_uses_the_system_allocator_by_default():
    assert _backend() == "system"


@pytest.mark.parametrize("pool", ["mimalloc", "jemalloc"])
def test_a_pool_the_user_names_is_kept(pool):
    import pyarrow as pa

    if pool not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {pool}")
    assert _backend(ARROW_DEFAULT_MEMORY_POOL=pool) == pool
