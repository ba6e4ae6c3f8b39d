"""Session services for the ``deploy`` tests: one PostgreSQL server and one Ray head, both on
127.0.0.1, started on first use and stopped at the end of the session (also after failures)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.platform.deploy_services import listening_addresses, postgres_server, ray_head


def non_loopback(addresses: set[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
    """The (ip, port, pid) entries not on a loopback address (IPv4-mapped IPv6 counts as its IPv4)."""

    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%")[0])
        return (getattr(address, "ipv4_mapped", None) or address).is_loopback

    return {entry for entry in addresses if not loopback(entry[0])}


@pytest.fixture(scope="session")
def postgres():
    with postgres_server() as server:
        yield server
        # Every backend the tests opened is still a child of the postmaster here.
        assert not non_loopback(listening_addresses(server.server_pids()))


@pytest.fixture(scope="session")
def ray_cluster(postgres):
    """A Ray head whose workers hold the instance's database credentials in their environment."""
    with ray_head(extra_env=postgres.env) as head:
        yield head
        assert not non_loopback(listening_addresses(head.pids()))
