"""@trigger end to end: events published three ways start runs through the real Dagster daemon.

The servers run as real processes (`dagster dev`, or `dagster-daemon run`) on the test's persistent
DAGSTER_HOME; results are read through the Metaflow client and the Dagster instance.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from dagster import DagsterRunStatus

from metaflow_dagster.events import DagsterEvent
from metaflow_dagster.runtime import event_asset_key
from tests.helpers import REPO, Server, dagster_dev, flow_path, hold_runs, metaflow_run, wait_for

# The dagster-daemon console script beside this interpreter (pyenv shims would pick another one).
DAEMON = [os.path.join(os.path.dirname(sys.executable), "dagster-daemon")]


@pytest.fixture
def served(project):
    """Compile TriggeredFlow and serve it with `dagster dev` (webserver and daemon)."""
    defs, _ = project.create(flow_path("trigger_flow.py"))
    with dagster_dev(project, [defs], timeout=120) as url:
        yield project, url


def runs_of(project, job):
    from dagster import RunsFilter

    with project.instance() as inst:
        return inst.get_runs(filters=RunsFilter(job_name=job))


def test_events_from_python_cli_and_http_start_runs(served):
    project, url = served
    env = project.env()
    os.environ["DAGSTER_HOME"] = project.home
    py_id = DagsterEvent("data.ready", payload={"who": "python", "alpha": 0.125}).publish(ignore_errors=False)
    cli = subprocess.run(
        [sys.executable, "-m", "metaflow_dagster.events", "publish", "data.ready", "--url", url,
         "--payload", json.dumps({"who": "cli; $(rm -rf /) `ls` ünï", "cfg": {"k": [1, 2]}})],
        env=env, capture_output=True, text=True,
    )
    assert cli.returncode == 0, cli.stderr
    cli_id = cli.stdout.strip()
    # The exact curl line of docs/events.md, split into an argv list (no shell), pointed at this server.
    docs = open(os.path.join(REPO, "docs", "events.md")).read()
    line = next(ln for ln in docs.splitlines() if ln.startswith("curl "))
    curl = subprocess.run([a.replace("http://127.0.0.1:3000", url) for a in shlex.split(line)],
                          capture_output=True, text=True)
    assert curl.returncode == 0, curl.stderr
    bad = DagsterEvent("data.ready", payload={"alpha": "not-a-float", "who": "bad"}).publish(ignore_errors=False)

    done = wait_for(lambda: [r for r in runs_of(project, "TriggeredFlow") if r.is_finished]
                    if len([r for r in runs_of(project, "TriggeredFlow") if r.is_finished]) >= 3 else None,
                    420, "three triggered runs to finish")
    assert len(done) == 3 and all(r.status == DagsterRunStatus.SUCCESS for r in done)
    by_who = {}
    for drun in done:
        run = metaflow_run("TriggeredFlow", drun)
        alpha, who, cfg = run.end_task.data.values
        by_who[who] = (alpha, cfg, run)
    assert set(by_who) == {"python", "cli; $(rm -rf /) `ls` ünï", "curl"}
    assert by_who["python"][0] == 0.125 and by_who["curl"][0] == 2.5
    assert by_who["cli; $(rm -rf /) `ls` ünï"][1] == {"k": [1, 2]}
    # current.trigger inside the run, and Run.trigger in the client, name the event.
    run = by_who["python"][2]
    assert run["start"].task.data.start_trigger == ("data.ready", py_id)
    assert run.end_task.data.end_trigger == [("data.ready", py_id, "event")]
    assert run.trigger.event.name == "data.ready" and run.trigger.event.id == py_id
    assert by_who["cli; $(rm -rf /) `ls` ünï"][2].trigger.event.id == cli_id
    # The bad event started nothing and left its reason in Dagster's event log.
    assert not [r for r in runs_of(project, "TriggeredFlow") if bad in (r.tags.get("metaflow/event_ids") or "")]
    with project.instance() as inst:
        obs = inst.fetch_observations(event_asset_key("data.ready"), limit=10).records
    reasons = [o.asset_observation.metadata["reason"].value for o in obs]
    assert any("not a valid float" in r for r in reasons)


def test_burst_of_events_gives_exactly_one_run_each_despite_daemon_kills(project):
    """300 events, the daemon SIGKILLed twice while it consumes them: exactly 300 runs, 300 payloads.

    The run queue holds the runs (max_concurrent_runs: 0), so this measures what the sensor creates.
    """
    hold_runs(project)
    defs, _ = project.create(flow_path("trigger_flow.py"))
    # The instance's storage exists before the daemon starts, as a user's does: two processes creating a new
    # SQLite schema at once can leave it with two alembic heads (seen once in CI, on a loaded machine).
    project.instance().dispose()
    daemon = Server(project, DAEMON + ["run", "-f", defs], "daemon1.log")
    os.environ["DAGSTER_HOME"] = project.home
    try:
        for i in range(300):
            DagsterEvent("data.ready", payload={"who": "burst-%03d" % i}).publish(ignore_errors=False)
        wait_for(lambda: len(runs_of(project, "TriggeredFlow")) > 0, 180, "the first runs")
        daemon.kill(signal.SIGKILL)
        first_kill = len(runs_of(project, "TriggeredFlow"))
        daemon = Server(project, DAEMON + ["run", "-f", defs], "daemon2.log")
        wait_for(lambda: len(runs_of(project, "TriggeredFlow")) > first_kill, 180, "runs after the restart")
        daemon.kill(signal.SIGKILL)
        daemon = Server(project, DAEMON + ["run", "-f", defs], "daemon3.log")
        wait_for(lambda: len(runs_of(project, "TriggeredFlow")) >= 300, 300, "300 runs")
        time.sleep(10)  # a few more ticks: nothing more may appear
        runs = runs_of(project, "TriggeredFlow")
    finally:
        daemon.kill()
    payloads = [r.run_config["ops"]["start"]["config"]["who"] for r in runs]
    print("burst: %d events, %d runs, %d distinct payloads, %d runs before the first kill"
          % (300, len(runs), len(set(payloads)), first_kill))
    assert len(runs) == 300
    assert sorted(payloads) == ["burst-%03d" % i for i in range(300)]
