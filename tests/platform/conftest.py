"""Session services for the ``deploy`` tests: one PostgreSQL server and one Ray head, both on
127.0.0.1, started on first use and stopped at the end of the session (also after failures)."""

from __future__ import annotations

import pytest

from tests.platform.deploy_services import listening_addresses, non_loopback, postgres_server, ray_head


@pytest.fixture(scope="session")
def postgres():
    with postgres_server() as server:
        yield server
        # Every backend the tests opened is still a child of the postmaster here.
        assert not non_loopback(listening_addresses(server.server_pids()))


@pytest.fixture(scope="session")
def ray_cluster(postgres):
    """A Ray head whose workers get the session database's DAGSTER_PG_* from their own environment,
    as a cluster's workers would: builds on Ray use that database (``postgres.database``)."""
    with ray_head(extra_env=postgres.env) as head:
        yield head
        assert not non_loopback(listening_addresses(head.pids()))
