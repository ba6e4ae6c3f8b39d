"""Smoke test of the UI server: the code location loads in ``dagster-webserver``, a shard partition
is added and a partitioned materialization (with its checks) is launched through GraphQL and
succeeds; the server listens on 127.0.0.1 only and leaves no process behind when stopped.

The instance uses the DefaultRunCoordinator (runs start at once, without a daemon), so no
sensor or automation tick competes with the launched run on two shared cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import tests.platform.helpers  # noqa: F401  (offline, quiet environment first)
from dataselect.demo import write_demo
from dataselect.ingest import list_landing_files
from tests.platform.helpers import ROOT

STARTUP_SECONDS = 180
RUN_SECONDS = 180

DAGSTER_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


def _session_processes(session_id: int) -> dict[int, str]:
    """Live (non-zombie) processes of a session: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, session = fields[0], int(fields[3])
        if session == session_id and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port``, from /proc/net/tcp{,6}."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                if len(address) == 8:
                    addresses.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    words = bytes.fromhex(address)
                    addresses.add(socket.inet_ntop(socket.AF_INET6, b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4))))
    return addresses


def _outbound_address() -> str | None:
    """This machine's non-loopback address (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects a route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _stop(server: subprocess.Popen) -> dict[int, str]:
    """SIGTERM the server's process group, SIGKILL what remains; returns what outlived SIGTERM."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (server.poll() is None or _session_processes(server.pid)):
        time.sleep(0.5)
    survivors = _session_processes(server.pid)
    if survivors or server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.wait(timeout=30)
    return survivors


@pytest.mark.slow
def test_webserver_launches_a_partitioned_materialization(tmp_path):
    demo = write_demo(tmp_path / "data", seed=0, n_records=120, n_shards=2)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    store = tmp_path / "store"
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATASELECT_LANDING": demo.landing,
        "DATASELECT_REFERENCE": demo.reference,
        "DATASELECT_EVAL": demo.evaluation,
        "DATASELECT_STORE": str(store),
        "DATASELECT_EMBEDDING_BACKEND": "static",
    }
    log = (tmp_path / "webserver.log").open("wb")
    command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port), "-m", "dataselect_platform.definitions"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    survivors: dict[int, str] = {}
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    assert "dagster_webserver_version" in json.loads(response.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "webserver did not answer /server_info in time"
                time.sleep(1)

        # Listening on loopback only, and refusing connections on the machine's other address.
        assert _listening_addresses(port) == {"127.0.0.1"}
        outside = _outbound_address()
        if outside is not None:
            with pytest.raises(OSError), socket.create_connection((outside, port), timeout=3):
                pass

        workspace = _graphql(
            port,
            """{ workspaceOrError { ... on Workspace { locationEntries {
            name locationOrLoadError { __typename ... on RepositoryLocation { repositories { name
            jobs { name } } } ... on PythonError { message } } } } } }""",
        )
        [entry] = workspace["workspaceOrError"]["locationEntries"]
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        [repository] = location["repositories"]
        assert {"shard_ingest_job", "retraining_data_build_job", "__ASSET_JOB"} <= {j["name"] for j in repository["jobs"]}
        selector = {"repositoryLocationName": entry["name"], "repositoryName": repository["name"]}

        shard = list_landing_files(demo.landing)[0].key
        added = _graphql(
            port,
            """mutation Add($repo: RepositorySelector!, $key: String!) {
            addDynamicPartition(repositorySelector: $repo, partitionsDefName: "shards", partitionKey: $key) {
            __typename ... on AddDynamicPartitionSuccess { partitionKey } ... on PythonError { message } } }""",
            {"repo": selector, "key": shard},
        )
        assert added["addDynamicPartition"] == {"__typename": "AddDynamicPartitionSuccess", "partitionKey": shard}

        params = {
            "selector": {
                **selector,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["raw_pool"]}, {"path": ["embeddings"]}],
                "assetCheckSelection": [
                    {"assetKey": {"path": ["raw_pool"]}, "name": "raw_pool_valid"},
                    {"assetKey": {"path": ["embeddings"]}, "name": "embeddings_valid"},
                ],
            },
            # One process for the run: the default multiprocess executor would start (and import
            # everything in) a fresh process per step, ~20 s each on two shared cores.
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": shard}]},
        }
        launched = _graphql(port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        deadline = time.monotonic() + RUN_SECONDS
        status = None
        while time.monotonic() < deadline:
            status = _graphql(port, "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
                "runOrError"
            ]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(2)
        assert status == "SUCCESS", (tmp_path / "webserver.log").read_text()[-3000:]

        checks = _graphql(
            port,
            """query Checks($id: ID!) { runOrError(runId: $id) { ... on Run {
            assetMaterializations { assetKey { path } partition } } } }""",
            {"id": run_id},
        )["runOrError"]
        assert sorted((m["assetKey"]["path"][0], m["partition"]) for m in checks["assetMaterializations"]) == [
            ("embeddings", shard),
            ("raw_pool", shard),
        ]
        assert (store / "raw_pool" / f"{shard}.parquet").is_file()
        assert (store / "embeddings" / f"{shard}.parquet").is_file()
    finally:
        survivors = _stop(server)
        log.close()
    assert server.returncode is not None
    assert not survivors, f"still running after SIGTERM to the process group: {survivors}"
    assert not _session_processes(server.pid)
