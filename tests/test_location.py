"""The one code location of every deployment (metaflow_dagster/location.py), loaded as Dagster loads it.

Definitions files here are small hand-written ones (`defs = Definitions(...)`): the location needs nothing
else of them. Each check runs in a fresh interpreter, as a code server or a run worker does.
"""

import json
import os
import subprocess
import sys
import textwrap

from metaflow_dagster import deployments as dep

DEFS = '''
from dagster import AssetSpec, Definitions, job, op, sensor, SkipReason

@op
def start():
    pass

@job(name="{job}", tags={{"metaflow/deployment": "d-{job}"}})
def the_job():
    start()

@sensor(name="{job}_on_go", job=the_job)
def the_sensor(context):
    return SkipReason("no events")

defs = Definitions(jobs=[the_job], sensors=[the_sensor],
                   assets=[AssetSpec(["metaflow_event", "go"], description="event go, for {job}")])
'''


def _deploy(tmp_path, jobs, broken=()):
    home = tmp_path / "home"
    ws = dep.Workspace(str(home))
    for job in jobs:
        path = tmp_path / ("%s.py" % job)
        path.write_text(("raise RuntimeError('%s is broken')\n" % job if job in broken else "") + DEFS.format(job=job))
        ws.register(job, str(path), flows=[{"job_name": job, "name": job + "Flow"}])
    return ws


def _run(code, ws):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), ws.location_file], capture_output=True,
                          text=True, env=dict(os.environ, DAGSTER_HOME=ws.home))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("location", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def test_a_run_worker_imports_only_the_file_of_its_job(tmp_path):
    ws = _deploy(tmp_path, ["A", "B", "C"])
    out = _run(LOAD + """
repo = module.repo_B
job = repo.get_job("B")
print(json.dumps({"job": job.name, "loaded": sorted(m for m in sys.modules if m.startswith("metaflow_deployment_"))}))
""", ws)
    assert out == {"job": "B", "loaded": ["metaflow_deployment_B"]}


def test_every_deployment_is_a_repository_and_event_assets_are_one_per_event(tmp_path):
    ws = _deploy(tmp_path, ["A", "B"])
    out = _run(LOAD + """
from dagster import RepositoryDefinition
repos = {r.name: r for r in vars(module).values() if isinstance(r, RepositoryDefinition)}
events = repos.pop("__metaflow_events__")
print(json.dumps({
    "repos": {n: [j.name for j in r.get_all_jobs()] for n, r in sorted(repos.items())},
    "sensors": sorted(s.name for r in repos.values() for s in r.sensor_defs),
    "assets": {k.to_user_string(): a.specs_by_key[k].description for k, a in events.assets_defs_by_key.items()},
}))
""", ws)
    assert out["repos"] == {"A": ["A"], "B": ["B"]}
    assert out["sensors"] == ["A_on_go", "B_on_go"]
    assert out["assets"] == {"metaflow_event/go": "event go, for A; event go, for B"}


def test_a_deployment_that_does_not_load_is_a_placeholder_and_the_others_serve(tmp_path):
    ws = _deploy(tmp_path, ["A", "B"], broken=["A"])
    out = _run(LOAD + """
a, b = module.repo_A.get_job("A"), module.repo_B.get_job("B")
print(json.dumps({"a": [a.description, a.tags], "b": b.tags}))
""", ws)
    description, tags = out["a"]
    assert description.startswith("BROKEN: deployment A (flow AFlow,") and "RuntimeError: A is broken" in description
    assert "RuntimeError: A is broken" in tags["metaflow/broken"]
    assert out["b"] == {"metaflow/deployment": "d-B"}
    status = subprocess.run([sys.executable, "-m", "metaflow_dagster.location", "status", ws.dir],
                            capture_output=True, text=True)
    state = json.loads(status.stdout)
    assert (state["A"]["ok"], state["B"]["ok"]) == (False, True) and "A is broken" in state["A"]["error"]


def test_check_loads_a_file_as_a_code_server_does(tmp_path):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(DEFS.format(job="G"))
    bad.write_text("from dagster import Field, Int\nField(Int, default_value='42')\n")
    ok = subprocess.run([sys.executable, "-m", "metaflow_dagster.location", "check", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"ok": True, "jobs": ["G"], "schedules": [], "sensors": ["G_on_go"],
                                     "assets": ["metaflow_event/go"]}
    no = subprocess.run([sys.executable, "-m", "metaflow_dagster.location", "check", str(bad)],
                        capture_output=True, text=True)
    assert no.returncode == 1 and "DagsterInvalidConfigError" in json.loads(no.stdout)["error"]


def test_the_location_shares_the_runtimes_tag_names():
    """location.py is copied alone into a Dagster home (it needs only Dagster), so it keeps its own copy of
    the tag the runtime puts on every job; this keeps the two equal."""
    from metaflow_dagster import location
    from metaflow_dagster.runtime import contract

    assert location.DEPLOYMENT_TAG == contract.DEPLOYMENT_TAG
