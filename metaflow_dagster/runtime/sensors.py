"""``@trigger`` and ``@trigger_on_finish``: sensors over Dagster's own event log, and publishing events.

An event is a runless materialization of ``metaflow_event/<name>``; a sensor reads them in storage-id order
with a cursor, so each event (or complete set of events) starts exactly one run (``EventSensorLogic``).
"""

import hmac
import json
import os
import time

from .contract import (
    EVENT_ASSET_PREFIX,
    MAX_PAYLOAD_BYTES,
    SIGNATURE_FIELD,
    TRIGGERS_TAG,
    BadEvent,
    coerce_param,
    event_asset_key,
    event_signature,
)
from .executor import previous_cron_tick

_EVENT_PAGE = 200
_TICK_MAX_EVENTS = 1000      # a tick reads at most this many events ...
_TICK_BUDGET_SECONDS = 1.0   # ... or for this long; the next tick goes on from the cursor


def read_event(record):
    """The Metaflow event in an event-log record: ``{name, id, timestamp, payload, storage_id}``.

    Every metadata entry of the materialization is a payload field. An event published without
    Metaflow's envelope (plain HTTP) gets its id from the storage id and its timestamp from the log.
    """
    mat = record.asset_materialization
    payload = {k: v.value for k, v in (mat.metadata or {}).items()}
    event_id = str(payload.get("id") or "dagster-event-%d" % record.storage_id)
    size = len(json.dumps(payload, default=str).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise BadEvent("payload of %d bytes is larger than the %d bytes an event may carry" % (size, MAX_PAYLOAD_BYTES),
                       event_id)
    return {
        "name": mat.asset_key.path[-1],
        "id": event_id,
        "timestamp": int(payload.get("timestamp") or record.timestamp),
        "payload": payload,
        "storage_id": record.storage_id,
    }


class EventSensorLogic:
    """What a trigger sensor does on a tick, kept apart from Dagster's decorator to test it.

    ``triggers`` is FLOW["triggers"] (``@trigger``) or FLOW["finish_triggers"] (``@trigger_on_finish``):
    ``{"events": [{"name", "parameters", "filters", "type"}], "options": {...}}``. An event whose payload
    lacks a field of ``filters`` with that value is not for this flow and is passed over (an upstream run
    of another project or branch). Events of type "run" (an upstream flow's end) feed no Parameter. With
    one "event" and no ``parameters`` the default mapping applies (every Parameter from the payload field
    of its lower-cased name). Several events mean AND: the latest of each waits in the cursor until all
    have arrived; ``options["reset_at"]`` (``{"cron", "timezone"}``) drops waiting events older than the
    latest cron tick. An event carrying the id of the last one of its name that fired is a re-send (a
    retried task publishes its end event again) and is dropped. With ``options["secret_env"]`` an event
    whose ``signature`` is missing or is not ``event_signature`` of its fields under that variable's key is
    skipped, with the reason.

    The cursor is ``{"after": {event: storage id}, "pending": {event: event}, "fired": {event: id}}``.
    Without a cursor (a new sensor) only events written after ``since`` count, so deploying a flow does not
    replay the event log's history.
    """

    def __init__(self, flow, triggers, since=None):
        self.flow = flow
        self.events = triggers["events"]
        self.options = triggers.get("options") or {}
        self.params = {p["name"]: p for p in flow["parameters"]}
        self.since = since

    def mapping(self, spec):
        if spec.get("type") == "run":
            return {}, False
        if len(self.events) == 1 and not spec.get("parameters"):
            return {name: name.lower() for name in self.params}, True
        return dict(spec.get("parameters") or {}), False

    def run_config(self, fired):
        """Run config for the events in ``fired`` (one per trigger); raises BadEvent."""
        config = {}
        for spec in self.events:
            event = fired[spec["name"]]
            mapping, default = self.mapping(spec)
            for param, field in mapping.items():
                p = self.params.get(param)
                if p is None:
                    raise BadEvent("event %s maps field %r to unknown parameter %r" % (spec["name"], field, param))
                if field in event["payload"]:
                    where = "event %s (id %s) field %r for parameter %r" % (spec["name"], event["id"], field, param)
                    config[param] = coerce_param(p["type"], event["payload"][field], where)
                elif not default and p["required"] and p["default"] is None:
                    raise BadEvent("event %s (id %s) lacks field %r for required parameter %r"
                                   % (spec["name"], event["id"], field, param))
        for name, p in self.params.items():
            if p["required"] and p["default"] is None and name not in config:
                raise BadEvent("no event field feeds required parameter %r" % name)
        return config

    def _reset_boundary(self, now):
        """The latest tick of ``reset_at`` at or before ``now`` (its cron is in Dagster's form, its timezone set:
        the compiler wrote them), or None without ``reset_at``."""
        reset = self.options.get("reset_at")
        if not reset:
            return None
        return previous_cron_tick(now, reset["cron"], reset["timezone"])

    def _secret(self):
        """The key events must be signed with, or None. A key named but not set stops the tick (the sensor
        fails and keeps its cursor) rather than skip or accept every event until it is set."""
        name = self.options.get("secret_env")
        if not name:
            return None
        secret = os.environ.get(name)
        if not secret:
            raise RuntimeError("@trigger(options={'secret_env': %r}): the variable is not set where this sensor runs "
                               "(the code server); events wait until it is" % name)
        return secret

    def _unsigned(self, event, secret):
        """Why ``event`` fails the signature check with ``secret`` (None when it passes or none is asked for)."""
        if secret is None:
            return None
        given = event["payload"].get(SIGNATURE_FIELD)
        if not isinstance(given, str) or not given:
            return "it is not signed (%s requires a %r field)" % (self.options["secret_env"], SIGNATURE_FIELD)
        if not hmac.compare_digest(given.encode("utf-8"), event_signature(event["payload"], secret).encode("utf-8")):
            return "its signature does not match the key in %s" % self.options["secret_env"]
        if not event["payload"].get("id"):
            # Without an id of its own an event gets its storage id, new on every post: a replay would run again.
            return "it is signed but has no 'id' field, so a replay of it could not be told apart"
        return None

    @staticmethod
    def _mismatch(spec, event):
        """The first filter field ``event`` fails, or None when it is for this flow."""
        for field, want in (spec.get("filters") or {}).items():
            if str(event["payload"].get(field)) != want:
                return field
        return None

    def tick(self, instance, cursor, now, log):
        """One tick: returns (run requests as (run_key, config, triggers), skipped, new cursor).

        ``skipped`` lists ``(event name, event id or None, reason)`` for every event that cannot start a run.
        A tick reads at most _TICK_MAX_EVENTS events, or for _TICK_BUDGET_SECONDS; the next one goes on from
        the cursor.
        """
        state = json.loads(cursor) if cursor else {"after": {}, "pending": {}}
        state.setdefault("fired", {})
        tick = {"secret": self._secret(), "requests": [], "skipped": [], "log": log}
        started, read = time.monotonic(), 0
        boundary = self._reset_boundary(now)
        if boundary is not None:
            for name in [n for n, e in state["pending"].items() if e["timestamp"] < boundary]:
                log.info("dropping waiting event %s (id %s): reset_at passed" % (name, state["pending"][name]["id"]))
                del state["pending"][name]
        for name in [e["name"] for e in self.events]:
            while time.monotonic() - started < _TICK_BUDGET_SECONDS and read < _TICK_MAX_EVENTS:
                records = self._page(instance, name, state["after"].get(name))
                read += len(records)
                for record in records:
                    state["after"][name] = record.storage_id
                    self._consider(name, record, state, tick)
                if len(records) < _EVENT_PAGE:
                    break
        return tick["requests"], tick["skipped"], json.dumps(state, sort_keys=True)

    def _page(self, instance, name, after):
        """The next page of events ``name`` after storage id ``after`` (a new sensor: written after ``since``)."""
        from dagster import AssetRecordsFilter

        return instance.fetch_materializations(
            AssetRecordsFilter(asset_key=event_asset_key(name), after_storage_id=after,
                               after_timestamp=self.since if after is None else None),
            limit=_EVENT_PAGE, ascending=True,
        ).records

    def _consider(self, name, record, state, tick):
        """Take one event record of ``name``: skip it (with the reason), pass over it, or add it to the events
        waiting in ``state``; when every event the trigger needs has arrived, add a run request to ``tick``."""
        log, spec = tick["log"], next(e for e in self.events if e["name"] == name)
        try:
            event = read_event(record)
        except BadEvent as e:
            log.warning("skipping event %s (id %s): %s" % (name, e.event_id, e))
            tick["skipped"].append((name, e.event_id, str(e)))
            return
        unsigned = self._unsigned(event, tick["secret"])
        if unsigned:
            log.warning("skipping event %s (id %s): %s" % (name, event["id"], unsigned))
            tick["skipped"].append((name, event["id"], unsigned))
            return
        field = self._mismatch(spec, event)
        if field is not None:
            log.info("passing over event %s (id %s): field %r is not %r" % (name, event["id"], field, spec["filters"][field]))
            return
        if state["fired"].get(name) == event["id"]:
            log.info("dropping event %s (id %s): a re-send of one that already fired" % (name, event["id"]))
            return
        state["pending"][name] = event
        names = [e["name"] for e in self.events]
        if not all(n in state["pending"] for n in names):
            return
        fired = {n: state["pending"].pop(n) for n in names}
        state["fired"].update((n, fired[n]["id"]) for n in names)
        try:
            config = self.run_config(fired)
        except BadEvent as e:
            log.warning("skipping event %s: %s" % (name, e))
            tick["skipped"].append((name, event["id"], str(e)))
            return
        tick["requests"].append((
            "+".join(fired[n]["id"] for n in names), config,
            [{"timestamp": fired[n]["timestamp"], "id": fired[n]["id"], "name": n,
              "type": next(e for e in self.events if e["name"] == n).get("type", "event")} for n in names],
        ))


def _deployed_at():
    """When these definitions were written: the generated file's mtime (``create`` writes it atomically).

    A sensor without a cursor starts here. The runtime is pasted into the generated file, so ``__file__``
    is that file; imported as ``metaflow_dagster.runtime`` (tests) it is this module, an older time.
    """
    try:
        return os.path.getmtime(__file__)
    except OSError:
        return None


def _trigger_sensor(runtime, job, triggers, name, description):
    """A Dagster sensor that runs ``job`` once per event (or complete set of events) of ``triggers``."""
    from dagster import AssetObservation, DefaultSensorStatus, RunRequest, SkipReason, sensor

    logic = EventSensorLogic(runtime.flow, triggers, since=_deployed_at())
    interval = int((triggers.get("options") or {}).get("interval", 2))
    # The start op: named after the start step, behind the job's prefix in a file of several flows.
    start = runtime.flow.get("start_op", runtime.flow["start_step"])
    deploy_tags = runtime.flow["options"]["tags"]

    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _sensor(context):
        requests, skipped, cursor = logic.tick(context.instance, context.cursor, time.time(), context.log)
        for event_name, event_id, reason in skipped:
            context.instance.report_runless_asset_event(
                AssetObservation(
                    asset_key=event_asset_key(event_name),
                    description="event skipped by %s: %s" % (context.sensor_name, reason),
                    metadata={"skipped_event_id": event_id or "", "reason": reason},
                )
            )
        context.update_cursor(cursor)
        if not requests:
            return SkipReason("no new events")
        return [
            RunRequest(
                run_key="event:" + key,
                run_config={"ops": {start: {"config": config}}},
                tags={
                    TRIGGERS_TAG: json.dumps(trig),
                    "metaflow/event_ids": ",".join(t["id"] for t in trig),
                    "metaflow/deploy_tags": json.dumps(deploy_tags),
                },
            )
            for key, config, trig in requests
        ]

    return _sensor


def _event_sensor(runtime, job):
    """The sensor of a flow's ``@trigger``: one run per event (or per complete set of events). Its name and
    description are the compiler's (FLOW["sensors"])."""
    sensor = runtime.flow["sensors"]["triggers"]
    return _trigger_sensor(runtime, job, runtime.flow["triggers"], sensor["name"], sensor["description"])


def _finish_sensor(runtime, job):
    """The sensor of a flow's ``@trigger_on_finish``: one run per successful run of the upstream flow(s)."""
    sensor = runtime.flow["sensors"]["finish_triggers"]
    return _trigger_sensor(runtime, job, runtime.flow["finish_triggers"], sensor["name"], sensor["description"])


def event_assets(*runtimes):
    """An AssetSpec per event the flows of ``runtimes`` listen to, so the UI shows event -> job.

    A file of several flows declares its assets once for all of them: Dagster refuses two specs of one key,
    so an event several flows listen to is one asset whose description names them all.
    """
    from dagster import AssetSpec

    heads, listeners = {}, {}
    for runtime in runtimes:
        flow = runtime.flow
        for e in (flow.get("triggers") or {}).get("events", []):
            heads.setdefault(e["name"], "Metaflow event %s (publish it to trigger " % e["name"])
            listeners.setdefault(e["name"], []).append(flow["name"])
        for e in (flow.get("finish_triggers") or {}).get("events", []):
            heads.setdefault(e["name"], "Metaflow event %s: a run of %s succeeded (triggers " % (e["name"], e["flow"]))
            listeners.setdefault(e["name"], []).append(flow["name"])
    return [
        AssetSpec(event_asset_key(name), description=head + ", ".join(dict.fromkeys(listeners[name])) + ")",
                  group_name=EVENT_ASSET_PREFIX)
        for name, head in heads.items()
    ]


def publish_event(instance, name, payload):
    """Write event ``name`` to the Dagster event log, where every trigger sensor of the instance reads it."""
    from dagster import AssetMaterialization

    instance.report_runless_asset_event(AssetMaterialization(asset_key=event_asset_key(name), metadata=payload))
