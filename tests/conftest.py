"""Shared test fixtures: one Metaflow datastore per test session, a fresh DAGSTER_HOME per test.

Metaflow reads its configuration from the environment when it is first imported, so the local datastore
root and the user are set here, before any test module imports metaflow.
"""

import os
import tempfile

_SESSION_ROOT = tempfile.mkdtemp(prefix="mfd-tests-")
os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = _SESSION_ROOT
os.environ["METAFLOW_USER"] = "tester"  # tests compare @project branch names
os.environ["USER"] = "tester"

import pytest  # noqa: E402

from tests.helpers import FLOWS, DagsterProject  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_environ():
    """Loading generated definitions (FlowRuntime) sets Metaflow settings in os.environ, as it must in a
    worker; no test may leak them into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # As `create` writes where there is none (deployments.ensure_instance_config), plus no telemetry.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n"
    )
    return str(home)


@pytest.fixture
def project(tmp_path, dagster_home):
    """Compile flows and run their jobs the way a user does, on a persistent Dagster instance."""
    return DagsterProject(str(tmp_path), dagster_home)


@pytest.fixture(scope="session")
def flows_dir():
    return FLOWS
