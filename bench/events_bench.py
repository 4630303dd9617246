"""Event benchmarks: publish -> run STARTED latency, and one sensor tick over 100,000 pending events.

    python bench/events_bench.py latency [--events 50] [--gap 3]
    python bench/events_bench.py tick [--pending 100000]

`latency` compiles tests/flows/trigger_flow.py, serves it with `dagster dev` (webserver and daemon, the
shipped sensor settings) on a fresh DAGSTER_HOME, publishes events one every --gap seconds and reports the
p50/p95 of (run start_time - publish time), split into publish -> run created (the sensor) and created ->
STARTED (Dagster's run queue and launcher). `tick` writes --pending events into a fresh instance and times
one tick of the @trigger sensor logic, with its peak Python memory (tracemalloc).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOW = os.path.join(REPO, "tests", "flows", "trigger_flow.py")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def fresh_home(instance_config=True):
    home = tempfile.mkdtemp(prefix="mfd-bench-events-")
    if instance_config:
        with open(os.path.join(home, "dagster.yaml"), "w") as f:
            f.write("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = home
    os.environ.setdefault("METAFLOW_USER", "bench")
    return home


def first_tick(home, port, timeout=300):
    """Wait until the webserver answers and the daemon has ticked the sensor once (it then has a cursor)."""
    from dagster import DagsterInstance

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/server_info" % port, timeout=2).read()
            with DagsterInstance.from_config(home) as inst:
                states = [s for s in inst.all_instigator_state() if s.name.startswith("TriggeredFlow_on_")]
                if states and inst.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the sensor of TriggeredFlow did not tick within %d s" % timeout)


def latency(n, gap):
    from dagster import DagsterInstance, RunsFilter

    from metaflow_dagster.events import DagsterEvent

    home = fresh_home(instance_config=False)  # as a user starts: `create` writes the instance's dagster.yaml
    subprocess.run([sys.executable, FLOW, "dagster", "create"], check=True, cwd=home, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(home, "dev.log"), "w")
    workspace = os.path.join(home, "metaflow", "workspace.yaml")  # the serving line `create` prints
    server = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", workspace, "-p", str(port)], cwd=home,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first_tick(home, port)
        published = {}
        for i in range(n):
            t = time.time()
            published[DagsterEvent("data.ready", payload={"who": "bench-%d" % i}).publish(ignore_errors=False)] = t
            time.sleep(gap)
        instance = DagsterInstance.get()
        deadline = time.time() + 600
        lat, created = {}, {}
        while len(lat) < n and time.time() < deadline:
            for rec in instance.get_run_records(filters=RunsFilter(job_name="TriggeredFlow")):
                event_id = rec.dagster_run.tags.get("metaflow/event_ids")
                if event_id in published and rec.start_time:
                    lat[event_id] = rec.start_time - published[event_id]
                    created[event_id] = rec.create_timestamp.timestamp() - published[event_id]
            time.sleep(2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    values, made = list(lat.values()), list(created.values())
    queued = [lat[k] - created[k] for k in lat]
    return {"events": n, "runs_started": len(values), "gap_s": gap,
            "p50_s": round(statistics.median(values), 2), "p95_s": round(percentile(values, 0.95), 2),
            "max_s": round(max(values), 2),
            "publish_to_created_p50_s": round(statistics.median(made), 2),
            "publish_to_created_p95_s": round(percentile(made, 0.95), 2),
            "created_to_started_p50_s": round(statistics.median(queued), 2),
            "created_to_started_p95_s": round(percentile(queued, 0.95), 2)}


def tick(pending):
    import logging

    from dagster import AssetMaterialization, DagsterInstance

    from metaflow_dagster.events import envelope
    from metaflow_dagster.runtime import EventSensorLogic, event_asset_key

    fresh_home()
    instance = DagsterInstance.get()
    t0 = time.time()
    for i in range(pending):
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key=event_asset_key("data.ready"), metadata=envelope("data.ready", {"who": "w%d" % i}))
        )
    write_s = time.time() - t0
    params = [{"name": "who", "var": "who", "type": "str", "default": None, "required": True, "help": ""}]
    triggers = {"events": [{"name": "data.ready", "parameters": {}}], "options": {}}
    logic = EventSensorLogic({"name": "F", "start_step": "start", "parameters": params, "options": {"tags": []}}, triggers)
    tracemalloc.start()
    t0 = time.perf_counter()
    requests, skipped, cursor = logic.tick(instance, None, time.time(), logging.getLogger("bench"))
    tick_s = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"pending": pending, "write_s": round(write_s, 1), "tick_s": round(tick_s, 3),
            "runs_requested": len(requests), "peak_python_mib": round(peak / 2**20, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--events", type=int, default=50)
    lat.add_argument("--gap", type=float, default=3.0)
    tk = sub.add_parser("tick")
    tk.add_argument("--pending", type=int, default=100000)
    args = parser.parse_args()
    result = latency(args.events, args.gap) if args.what == "latency" else tick(args.pending)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
