"""@trigger_on_finish: the events a run emits and the sensor logic that consumes them, on a real instance.

The end-to-end chains (real runs, the daemon, several definitions files) are in tests/e2e/test_finish_e2e.py.
"""

import json
import logging
import runpy
import time

from dagster import instance_for_test

from metaflow_dagster.runtime import (
    EventSensorLogic,
    emitted_events,
    emitted_payload,
    publish_event,
)
from tests.helpers import compiled_literal, doc_ir, flow_literal, flow_path

LOG = logging.getLogger("test-finish")


def upstream(name, project=None, branch="user.tester", end="end", step_events=False):
    """The FLOW literal the core writes for a flow ``name`` of two steps, start and ``end``: the events its
    tasks publish are the core's (FLOW["steps"][step]["emits"])."""
    ir = doc_ir()
    ir["flow"].update(name=name, job_name=name, end_step=end)
    ir["steps"][0]["next"] = [end]
    ir["steps"][1]["name"] = end
    ir["options"]["emit_step_events"] = step_events
    if project:
        ir["flow"]["project"] = {"name": project, "branch": branch, "flow_name": "%s.%s.%s" % (project, branch, name),
                                 "production": branch == "prod"}
    return compiled_literal(ir)


def finish_run(instance, flow, run_id, step=None):
    """Publish what the end op of ``flow``'s run ``run_id`` publishes; returns the event id."""
    step = step or flow["end_step"]
    pathspec = "%s/%s/%s/t" % (flow["name"], run_id, step)
    for name in emitted_events(flow, step):
        publish_event(instance, name, emitted_payload(flow, pathspec, time.time()))
    return pathspec


def downstream(events):
    triggers = {"events": events, "options": {}}
    flow = {"name": "Down", "parameters": [{"name": "n", "var": "n", "type": "int", "default": 1,
                                            "required": False, "help": ""}]}
    return EventSensorLogic(flow, triggers), triggers


def on_finish(flow, project=None, branch=None):
    name = "metaflow.%s.end" % ".".join(x for x in (project, branch, flow) if x)
    filters = {"auto-generated-by-metaflow": "True"}
    if project:
        filters.update(project_name=project, branch_name=branch)
    return {"name": name, "flow": flow, "type": "run", "filters": filters}


def test_emitted_events_and_payload_match_argo():
    plain = upstream("A")
    assert emitted_events(plain, "end") == ["metaflow.A.end"]
    assert emitted_events(plain, "start") == []
    assert emitted_events(upstream("A", step_events=True), "start") == ["metaflow.A.start"]
    custom = upstream("A", project="p", end="finish")
    assert emitted_events(custom, "finish") == ["metaflow.p.user.tester.A.finish", "metaflow.p.user.tester.A.end"]
    payload = emitted_payload(custom, "A/r1/finish/t", 1700000000)
    assert payload["id"] == payload["pathspec"] == "A/r1/finish/t"
    assert (payload["flow_name"], payload["run_id"], payload["step_name"], payload["task_id"]) == (
        "A", "r1", "finish", "t")
    assert payload["project_name"] == "p" and payload["branch_name"] == "user.tester"
    assert payload["is_user_branch"] == "True" and "is_production" not in payload
    assert payload["project_flow_name"] == "p.user.tester.A"
    assert payload["auto-generated-by-metaflow"] == "True" and payload["utc_date"] == "20231114"
    assert all(isinstance(v, str) for v in payload.values())
    assert "project_name" not in emitted_payload(plain, "A/r1/end/t", 0)


def test_one_run_per_upstream_success_and_retries_are_dropped():
    logic, _ = downstream([on_finish("A")])
    flow = upstream("A")
    with instance_for_test() as instance:
        first = [finish_run(instance, flow, "r%d" % i) for i in range(3)]
        requests, skipped, cursor = logic.tick(instance, None, time.time(), LOG)
        assert [r[0] for r in requests] == first and not skipped
        assert requests[0][1] == {}  # a run trigger feeds no Parameter: the defaults apply
        assert requests[0][2] == [{"timestamp": requests[0][2][0]["timestamp"], "id": first[0],
                                   "name": "metaflow.A.end", "type": "run"}]
        finish_run(instance, flow, "r2")  # the end task of r2 retried and published again
        again = finish_run(instance, flow, "r3")
        requests, _, cursor = logic.tick(instance, cursor, time.time(), LOG)
        assert [r[0] for r in requests] == [again]
        assert logic.tick(instance, cursor, time.time(), LOG)[0] == []


def test_project_and_branch_filters():
    logic, _ = downstream([on_finish("A", "etl", "prod")])
    with instance_for_test() as instance:
        mine = finish_run(instance, upstream("A", project="etl", branch="prod"), "r1")
        finish_run(instance, upstream("A", project="etl", branch="user.bob"), "r2")  # another event name
        # the same event name published by hand, without Metaflow's auto-generated marker
        publish_event(instance, "metaflow.etl.prod.A.end", {"id": "x", "project_name": "etl", "branch_name": "prod"})
        requests, skipped, _ = logic.tick(instance, None, time.time(), LOG)
        assert [r[0] for r in requests] == [mine] and not skipped


def test_several_flows_mean_all_of_them():
    logic, _ = downstream([on_finish("A"), on_finish("B")])
    with instance_for_test() as instance:
        a1 = finish_run(instance, upstream("A"), "a1")
        requests, _, cursor = logic.tick(instance, None, time.time(), LOG)
        assert requests == [] and json.loads(cursor)["pending"]["metaflow.A.end"]["id"] == a1
        b1 = finish_run(instance, upstream("B"), "b1")
        requests, _, cursor = logic.tick(instance, cursor, time.time(), LOG)
        assert [r[0] for r in requests] == ["%s+%s" % (a1, b1)]
        assert [t["type"] for t in requests[0][2]] == ["run", "run"]


def test_new_sensor_does_not_replay_history():
    with instance_for_test() as instance:
        finish_run(instance, upstream("A"), "old")
        time.sleep(0.05)
        since = time.time()
        new = finish_run(instance, upstream("A"), "new")
        triggers = {"events": [on_finish("A")], "options": {}}
        logic = EventSensorLogic({"name": "Down", "parameters": []}, triggers, since=since)
        assert [r[0] for r in logic.tick(instance, None, time.time(), LOG)[0]] == [new]


def test_generated_definitions_have_a_schedule_and_both_sensors(project):
    defs_path, _ = project.create(flow_path("finish_forms_flow.py"))
    defs = runpy.run_path(defs_path)["defs"]
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"etl_user_tester_FinishFormsFlow_on_manual_rerun",
                            "etl_user_tester_FinishFormsFlow_after_UpstreamA_and_UpstreamB_and_UpstreamC"}
    assert [s.name for s in defs.schedules] == ["etl_user_tester_FinishFormsFlow_schedule"]
    keys = {k.path[-1] for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"manual.rerun", "metaflow.etl.user.tester.UpstreamA.end", "metaflow.etl2.prod.UpstreamB.end",
            "metaflow.other.test.x.UpstreamC.end"} <= keys


def test_local_trigger_option_keeps_working(tmp_path):
    """`python flow.py --trigger Flow/run_id run` (Metaflow's local testing of @trigger_on_finish)."""
    import subprocess
    import sys

    from metaflow import Flow, namespace

    def native(fixture, *argv):
        res = subprocess.run([sys.executable, flow_path(fixture), *argv], cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]

    ids = tmp_path / "a.id", tmp_path / "b.id"
    native("chain_a_flow.py", "run", "--seed", "4", "--run-id-file", str(ids[0]))
    namespace(None)
    upstream_run = Flow("ChainAFlow")[ids[0].read_text()]
    native("chain_b_flow.py", "--trigger", upstream_run.pathspec, "run", "--run-id-file", str(ids[1]))
    data = Flow("ChainBFlow")[ids[1].read_text()]["start"].task.data
    assert data.upstream == upstream_run.pathspec and data.total == 40 + 41 + 42


def test_callable_flows_resolve_at_create(project):
    defs_path, _ = project.create(flow_path("finish_callable_flow.py"))
    events = flow_literal(defs_path)["finish_triggers"]["events"]
    assert [(e["name"], e["flow"], e["filters"].get("branch_name")) for e in events] == [
        ("metaflow.UpstreamA.end", "UpstreamA", None),
        ("metaflow.p.prod.blue.UpstreamB.end", "UpstreamB", "prod.blue"),
    ]


def test_create_with_emit_step_events_publishes_every_step(project):
    """A real run of a flow deployed with --emit-step-events: one event per step, named as on Argo."""
    from dagster import AssetRecordsFilter

    from metaflow_dagster.runtime import event_asset_key
    from tests.helpers import metaflow_run

    defs_path, _ = project.create(flow_path("chain_a_flow.py"), args=["--emit-step-events"])
    drun, res = project.execute(defs_path, "chain_user_tester_ChainAFlow", check=True)
    run = metaflow_run("ChainAFlow", drun)
    with project.instance() as inst:
        for step in ("start", "end"):
            name = "metaflow.chain.user.tester.ChainAFlow.%s" % step
            records = inst.fetch_materializations(AssetRecordsFilter(asset_key=event_asset_key(name)), limit=10).records
            assert len(records) == 1, name
            payload = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
            assert payload["id"] == run[step].task.pathspec and payload["step_name"] == step
            assert payload["project_flow_name"] == "chain.user.tester.ChainAFlow"
