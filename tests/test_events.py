"""Events: DagsterEvent publishing and the @trigger sensor logic, on a real temporary Dagster instance."""

import json
import logging
import os
import subprocess
import sys

import pytest
from dagster import AssetKey, AssetMaterialization, instance_for_test

from metaflow_dagster.events import DagsterEvent, DagsterEventException, envelope
from metaflow_dagster.runtime import EventSensorLogic, coerce_param, event_asset_key, event_signature
from tests.helpers import compiled_literal, doc_ir

LOG = logging.getLogger("test-events")

PARAMS = [
    {"name": "alpha", "var": "alpha", "type": "float", "default": 0.5, "required": False, "help": ""},
    {"name": "count", "var": "count", "type": "int", "default": 1, "required": False, "help": ""},
    {"name": "who", "var": "who", "type": "str", "default": None, "required": True, "help": ""},
    {"name": "cfg", "var": "cfg", "type": "json", "default": None, "required": False, "help": ""},
    {"name": "flag", "var": "flag", "type": "bool", "default": False, "required": False, "help": ""},
]


def flow(triggers):
    return {"name": "F", "start_step": "start", "parameters": PARAMS, "triggers": triggers, "options": {"tags": []}}


def publish(instance, name, **payload):
    event = envelope(name, payload)
    instance.report_runless_asset_event(AssetMaterialization(asset_key=event_asset_key(name), metadata=event))
    return event["id"]


def test_event_names_map_losslessly_to_asset_keys():
    for name in ("a", "a.b", "a-b", "a_b", "metaflow.proj.user.alice.Flow.end", "x.-_9"):
        key = event_asset_key(name)
        assert key == AssetKey(["metaflow_event", name])
        assert AssetKey.from_user_string(key.to_user_string()) == key
    with pytest.raises(DagsterEventException):
        DagsterEvent("bad/name")
    with pytest.raises(DagsterEventException):
        DagsterEvent("has space")


def test_coercion_by_parameter_type():
    assert coerce_param("int", "12", "f") == 12
    assert coerce_param("int", 3.0, "f") == 3
    assert coerce_param("float", "0.25", "f") == 0.25
    assert coerce_param("bool", "TRUE", "f") is True
    assert coerce_param("json", {"a": 1}, "f") == '{"a": 1}'
    assert coerce_param("str", 5, "f") == "5"
    for ptype, value in (("int", "x"), ("int", 2.5), ("int", True), ("float", "nan?"), ("json", "{bad"),
                         ("bool", "maybe"), ("str", {"a": 1})):
        with pytest.raises(Exception, match="not a valid|expected a"):
            coerce_param(ptype, value, "f")


def test_single_event_default_mapping_and_bad_events_are_skipped(caplog):
    triggers = {"events": [{"name": "go", "parameters": {}}], "options": {}}
    logic = EventSensorLogic(flow(triggers), triggers)
    with instance_for_test() as instance:
        good1 = publish(instance, "go", alpha="0.75", who="$(rm -rf /); `ls` ünï")
        publish(instance, "go", alpha="not-a-float", who="x")        # wrong type
        publish(instance, "go", alpha=1.0)                           # required 'who' missing
        publish(instance, "go", who="big", pad="x" * (1024 * 1024))  # 1 MB payload
        publish(instance, "go", who="y", cfg="{not json")            # invalid JSON for a JSON parameter
        good2 = publish(instance, "go", who="z", count=7, flag="true", cfg={"k": [1, 2]})
        publish(instance, "other", who="ignored")                    # another event name
        with caplog.at_level(logging.WARNING):
            requests, skipped, cursor = logic.tick(instance, None, 0, LOG)
        assert [r[0] for r in requests] == [good1, good2]
        assert requests[0][1] == {"alpha": 0.75, "who": "$(rm -rf /); `ls` ünï"}
        assert requests[1][1] == {"who": "z", "count": 7, "flag": True, "cfg": '{"k": [1, 2]}'}
        assert requests[0][2][0]["name"] == "go" and requests[0][2][0]["type"] == "event"
        reasons = caplog.text
        assert "not a valid float" in reasons and "required parameter 'who'" in reasons
        assert "larger than" in reasons and "not a valid json" in reasons
        assert len(skipped) == 4 and all(reason for _, _, reason in skipped)
        assert all(event_id for _, event_id, _ in skipped), "a skipped event always records its id"
        # The cursor is the storage id: nothing is read twice.
        again, _, _ = logic.tick(instance, cursor, 0, LOG)
        assert again == []


def test_explicit_mapping_and_and_semantics():
    triggers = {"events": [{"name": "a", "parameters": {"who": "user"}}, {"name": "b", "parameters": {"count": "n"}}],
                "options": {}}
    logic = EventSensorLogic(flow(triggers), triggers)
    with instance_for_test() as instance:
        a1 = publish(instance, "a", user="first")
        requests, skipped, cursor = logic.tick(instance, None, 0, LOG)
        assert requests == [] and json.loads(cursor)["pending"]["a"]["id"] == a1
        a2 = publish(instance, "a", user="second")
        b1 = publish(instance, "b", n="4")
        requests, skipped, cursor = logic.tick(instance, cursor, 0, LOG)
        assert len(requests) == 1
        key, config, trig = requests[0]
        assert key == "%s+%s" % (a2, b1) and config == {"who": "second", "count": 4}
        assert [t["name"] for t in trig] == ["a", "b"]
        assert json.loads(cursor)["pending"] == {}


def test_reset_at_drops_waiting_events():
    ir = doc_ir()
    ir["parameters"] = PARAMS
    ir["flow"]["triggers"] = {"events": [{"name": "a", "parameters": {"who": "user"}}, {"name": "b", "parameters": {}}],
                              "options": {"reset_at": {"cron": "0 * * * ? *"}}}
    literal = compiled_literal(ir)
    triggers = literal["triggers"]
    # The core hands the sensor Metaflow's cron in Dagster's form, and the timezone.
    assert triggers["options"]["reset_at"] == {"cron": "0 * * * *", "timezone": "UTC"}
    logic = EventSensorLogic(literal, triggers)
    with instance_for_test() as instance:
        publish(instance, "a", user="early")
        _, _, cursor = logic.tick(instance, None, 0, LOG)
        state = json.loads(cursor)
        waited = state["pending"]["a"]["timestamp"]
        # An hour boundary passes: the waiting event is dropped.
        _, _, cursor = logic.tick(instance, cursor, waited + 3600, LOG)
        assert json.loads(cursor)["pending"] == {}


def test_events_are_read_in_pages_without_loss():
    triggers = {"events": [{"name": "burst"}], "options": {}}
    logic = EventSensorLogic(flow(triggers), triggers)
    with instance_for_test() as instance:
        ids = [publish(instance, "burst", who="w%d" % i) for i in range(1450)]
        got, cursor = [], None
        for _ in range(10):
            requests, _, cursor = logic.tick(instance, cursor, 0, LOG)
            assert len(requests) <= 1000, "a tick is bounded"
            got += requests
        assert [r[0] for r in got] == ids
        assert [r[1]["who"] for r in got] == ["w%d" % i for i in range(1450)]


def test_publish_cli_writes_to_the_instance_and_rejects_bad_input(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    ok = subprocess.run([sys.executable, "-m", "metaflow_dagster.events", "publish", "cli.event",
                         "--payload", '{"who": "cli"}'], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    event_id = ok.stdout.strip()
    bad = subprocess.run([sys.executable, "-m", "metaflow_dagster.events", "publish", "cli.event",
                          "--payload", "{nope"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr and "cli.event" in bad.stderr
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        records = instance.fetch_materializations(event_asset_key("cli.event"), limit=10).records
        assert len(records) == 1
        meta = records[0].asset_materialization.metadata
        assert meta["id"].value == event_id and meta["who"].value == "cli"
        assert meta["generated-by-metaflow"].value is True and len(meta["utc_date"].value) == 8


def test_every_publisher_refuses_a_payload_that_no_sensor_could_read(tmp_path, monkeypatch):
    """Python publish() and the CLI refuse, before writing anything, a payload over 256 KiB (naming the
    limit) or one that is not JSON (naming the field); the CLI reads a large payload from a file or stdin."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.raises(DagsterEventException, match="event big: payload of 10487[0-9]* bytes is larger than the "
                                                    "262144 bytes an event may carry"):
        DagsterEvent("big", payload={"pad": "x" * (1 << 20)}).publish()  # ignore_errors concerns delivery only
    with pytest.raises(DagsterEventException, match="event odd: payload field 'when' is not JSON \\(object"):
        DagsterEvent("odd", payload={"when": object()}).publish()
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    cli = [sys.executable, "-m", "metaflow_dagster.events", "publish"]
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * (1 << 20)}))
    res = subprocess.run(cli + ["big", "--payload-file", str(big)], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "262144 bytes" in res.stderr, res.stderr
    small = json.dumps({"who": "stdin", "pad": "y" * 100000})  # too long for a comfortable argv, fine on stdin
    res = subprocess.run(cli + ["piped", "--payload-file", "-"], input=small, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(cli + ["both", "--payload", "{}", "--payload-file", "-"], input="{}", env=env,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "not both" in res.stderr
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.fetch_materializations(event_asset_key("big"), limit=1).records == []
        assert instance.fetch_materializations(event_asset_key("odd"), limit=1).records == []
        (record,) = instance.fetch_materializations(event_asset_key("piped"), limit=2).records
        assert record.asset_materialization.metadata["who"].value == "stdin"


def test_safe_publish_does_nothing_outside_a_deployed_run(monkeypatch, tmp_path):
    monkeypatch.delenv("METAFLOW_DAGSTER_DEPLOYED", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert DagsterEvent("x").safe_publish() is None
    monkeypatch.setenv("METAFLOW_DAGSTER_DEPLOYED", "1")
    assert DagsterEvent("x", payload={"k": 1}).add_to_payload("n", 2).safe_publish()


def test_dagster_event_is_a_metaflow_integration():
    code = "from metaflow.integrations import DagsterEvent; print(DagsterEvent.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "metaflow_dagster.events"


def test_signed_events_pass_and_unsigned_or_forged_ones_are_skipped(monkeypatch, caplog):
    triggers = {"events": [{"name": "go", "parameters": {}}], "options": {"secret_env": "GO_SECRET"}}
    logic = EventSensorLogic(flow(triggers), triggers)
    with instance_for_test() as instance:
        monkeypatch.delenv("GO_SECRET", raising=False)
        early = publish(instance, "go", who="early")
        # No key where the sensor runs: the tick fails and keeps its cursor, so nothing is consumed.
        with pytest.raises(RuntimeError, match="GO_SECRET.*not set"):
            logic.tick(instance, None, 0, LOG)
        monkeypatch.setenv("GO_SECRET", "k3y-ünï")
        good = envelope("go", {"who": "$(id)", "alpha": 0.25, "cfg": {"k": [1, None]}, "flag": True})
        good["signature"] = event_signature(good, "k3y-ünï")
        forged = dict(good, id="forged-id", who="mallory")       # a signed event with a field changed
        no_id = {"who": "anon"}
        no_id["signature"] = event_signature(no_id, "k3y-ünï")
        wrong_key = envelope("go", {"who": "eve"})
        wrong_key["signature"] = event_signature(wrong_key, "another key")
        for event in (good, forged, no_id, wrong_key):
            instance.report_runless_asset_event(AssetMaterialization(asset_key=event_asset_key("go"), metadata=event))
        with caplog.at_level(logging.WARNING):
            requests, skipped, _ = logic.tick(instance, None, 0, LOG)
        # "early" was never signed: it is skipped now, with the three others read in order.
        assert [r[0] for r in requests] == [good["id"]]
        assert requests[0][1] == {"who": "$(id)", "alpha": 0.25, "cfg": '{"k": [1, null]}', "flag": True}
        reasons = {event_id: reason for _, event_id, reason in skipped}
        assert len(skipped) == 4 and "not signed" in reasons[early]
        assert any("no 'id' field" in r for r in reasons.values())
        assert "does not match" in reasons["forged-id"] and "does not match" in reasons[wrong_key["id"]]
        assert "GO_SECRET" in caplog.text and "k3y" not in caplog.text


def test_publisher_signs_and_the_sensor_checks_through_the_cli(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), GO_SECRET="s3cret")
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    argv = [sys.executable, "-m", "metaflow_dagster.events", "publish", "go", "--payload", '{"who": "cli"}']
    ok = subprocess.run(argv + ["--secret-env", "GO_SECRET"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    unset = subprocess.run(argv + ["--secret-env", "NOPE_UNSET"], env=env, capture_output=True, text=True)
    assert unset.returncode == 2 and "NOPE_UNSET" in unset.stderr and "go" in unset.stderr
    no_url = subprocess.run(argv + ["--basic-auth-env", "GO_SECRET"], env=env, capture_output=True, text=True)
    assert no_url.returncode == 2 and "--url" in no_url.stderr
    triggers = {"events": [{"name": "go", "parameters": {}}], "options": {"secret_env": "GO_SECRET"}}
    from dagster import DagsterInstance

    os.environ["GO_SECRET"] = "s3cret"
    try:
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            requests, skipped, _ = EventSensorLogic(flow(triggers), triggers).tick(instance, None, 0, LOG)
    finally:
        del os.environ["GO_SECRET"]
    assert [r[0] for r in requests] == [ok.stdout.strip()] and skipped == []
