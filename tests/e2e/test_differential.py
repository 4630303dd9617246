"""Every fixture flow gives the same results on Dagster as with `python flow.py run` (issue #18, item 3).

For each flow in tests/flows that runs natively, the test runs it both ways with the same Parameters (and
the same top-level options), then compares the two runs through the Metaflow client: the set of steps (the
`_parameters` task included), the number of tasks per step, and for every task, matched by its step, its
foreach index path and its order among the tasks of that step and path (a recursive switch runs one step
several times), every artifact's name and value. Task ids, run ids and timestamps are never compared: they
differ between any two runs. A few artifacts hold such values by design; IGNORED names them and says why.

Runs are started a few at a time (WORKERS), in the order pytest selected the flows, by a module fixture;
each test waits for its own flow's two runs and compares them. The module prints how many flows, tasks and
artifacts it compared.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import FLOWS, DagsterProject, deployed_run, differences, flow_path, native_run, snapshot

# Flows that are not compared, and why. Every other file of tests/flows is.
SKIPPED = {
    "crash_flow.py": "built to fail: a foreach task SIGKILLs itself (tests/e2e/test_faults.py)",
    "failing_flow.py": "built to fail: step `boom` raises",
    "invalid_flow.py": "built to fail: Metaflow rejects the flow (a step without self.next)",
    "switch_case_into_join_flow.py": "built to fail: Metaflow's lint rejects a switch case that goes straight "
                                     "into a join, and `create` with it (tests/test_compiler.py)",
    "parallel_flow.py": "built to fail at `create`: @parallel is not supported yet (README), `create` refuses it",
    "opt_pypi_flow.py": "built to fail at `create`: @pypi is refused (Metaflow builds it with micromamba)",
    "schedule_required_flow.py": "built to fail at `create`: a scheduled flow with a required Parameter "
                                 "without default",
    "opt_wait_param_flow.py": "built to fail at `create`: a Parameter named like `dagster trigger --wait`",
    "opt_origin_param_flow.py": "built to fail at `create`: a Parameter named like `dagster resume "
                                "--origin-run-id`",
    "opt_step_param_flow.py": "built to fail at `create`: a Parameter named like `dagster resume`'s STEP",
    "bad_timezone_flow.py": "built to fail at `create`: its definitions do not load (Dagster refuses the "
                            "schedule's timezone), tests/test_deployments.py",
    "killed_step_flow.py": "times out on purpose: the first attempt of `work` sleeps 600 s until a test kills it",
    "trigger_flow.py": "needs a running server: its steps read current.trigger.event, which only an event "
                       "delivered by the daemon's sensor sets; `run` has none and fails",
    "signed_trigger_flow.py": "needs a running server: its start step reads current.trigger.event (see "
                              "trigger_flow.py)",
    "burst_down_flow.py": "needs a running server: its start step reads current.trigger.run, the upstream run "
                          "the daemon's finish sensor hands it; `run` has none and fails",
    "chain_b_flow.py": "needs a running server: reads current.trigger.run (see burst_down_flow.py)",
    "chain_c_flow.py": "needs a running server: reads current.trigger.runs (see burst_down_flow.py)",
    "celery_kill_flow.py": "built to fail: item 2 waits a minute for tests/e2e/test_celery.py to kill it, "
                           "then raises",
    "batch_flow.py": "built to fail at `create`: @batch has no Dagster step executor to run on "
                     "(tests/test_executors.py)",
    "kube_bad_flow.py": "built to fail at `create`: a @kubernetes attribute without a Kubernetes meaning "
                        "(tests/test_executors.py)",
    "kube_flow.py": "needs a Kubernetes cluster, natively too (@kubernetes); tests/test_executors.py builds its "
                    "Jobs with dagster-k8s's own code",
}

MARKER = os.path.join(FLOWS, "opt_notes.txt")  # an existing file, for the flows that fail until theirs exists

# How each flow is run, both ways: Parameters (required ones, or smaller values that keep the module within
# its time budget), top-level options, and files the flow reads from its working directory.
CASES = {
    "cfg_flow.py": {
        "top": ["--config-value", "extra", '{"label": "differential", "retries": 1}'],  # `flaky` needs 1 retry
        "files": {"cfg_settings.json": '{"project": "cfg_diff", "mode": "from-file", "threshold": 3}'},
    },
    "decorated_flow.py": {"params": {"my-name": "differential", "count": 2}},
    "flaky_flow.py": {"params": {"marker": MARKER}},
    "foreach_flow.py": {"params": {"count": 4}},
    "opt_params_flow.py": {"params": {"needed": 5, "spec": {"a": [1, 2.5, None]}, "flag": True}},
    "opt_with_flow.py": {"top": ["--with", "retry:times=1,minutes_between_retries=0",
                                 "--with", 'environment:vars={"WITH_VAR": "from-with"}']},
    "pdef_flow.py": {"params": {"a": 5, "spec": {"given": True}, "ratio": 0.25}},
    "resume_flow.py": {"params": {"marker": MARKER}},
    "resume_linear_flow.py": {"params": {"marker": MARKER}},
    "resume_params_flow.py": {"params": {"label": "differential", "count": 3}},
    "seams_flow.py": {"params": {"marker": MARKER}},
    "sleep_flow.py": {"params": {"seconds": 0}},
    "sleepy_flow.py": {"params": {"seconds": 0}},
    "timeout_flow.py": {"params": {"seconds": 0}},
}

# Artifacts whose values differ between any two runs of the flow, however they are run.
IGNORED = {
    "DecoratorsFlow": {"started": "time.time()", "ended": "time.time()", "spans": "pairs of time.time()"},
    "ResumeFlow": {"pid": "os.getpid()", "ran_in": "current.run_id"},
    "ResumeLinearFlow": {"pid_start": "os.getpid()", "pid_a": "os.getpid()"},
    "ResumeParamsFlow": {"pid_start": "os.getpid()", "pid_prepare": "os.getpid()",
                         "started_as": "how the task's interpreter was started (sys.orig_argv[1:2]): the flow "
                                       "file under `run`, the launcher under Dagster (see WhereFlow)"},
    "ResumeParamsForeachFlow": {"pid": "os.getpid()"},
    "OptNamespaceFlow": {"runs_seen": "the ids of the flow's runs that exist when the step runs"},
    "WhereFlow": {"argv": "the task process's command line, which holds the run id, task id and "
                          "input paths, and names the launcher the test asserts on (tests/e2e/test_executor.py)"},
}

WORKERS = 2  # flows run at once: one native and one Dagster run each, one after the other
FIXTURES = sorted(f for f in os.listdir(FLOWS) if f.endswith("_flow.py"))
PARAMS = [pytest.param(f, marks=pytest.mark.skip(reason=SKIPPED[f])) if f in SKIPPED else f for f in FIXTURES]


def run_both(workdir, fixture):
    """Both runs of one fixture, one after the other: (native pathspec, Dagster pathspec)."""
    case = CASES.get(fixture, {})
    for name, text in case.get("files", {}).items():
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    home = os.path.join(workdir, "dagster_home")
    os.makedirs(home)
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        f.write("telemetry:\n  enabled: false\n")
    project = DagsterProject(workdir, home)
    params, top = case.get("params"), case.get("top", ())
    native = native_run(workdir, flow_path(fixture), params, top, env=project.env())
    deployed = deployed_run(project, flow_path(fixture), params, top)
    return native, deployed


class Runs:
    """Starts the selected flows' runs WORKERS at a time, in test order, and hands each test its own."""

    def __init__(self, fixtures, root):
        self.pool = ThreadPoolExecutor(max_workers=WORKERS)
        self.futures = {}
        for f in fixtures:
            os.makedirs(root / f[:-3])
            self.futures[f] = self.pool.submit(run_both, str(root / f[:-3]), f)
        self.counts = {"flows": 0, "tasks": 0, "artifacts": 0}

    def result(self, fixture, timeout=900):
        return self.futures[fixture].result(timeout)

    def close(self):
        for fut in self.futures.values():
            fut.cancel()
        self.pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    selected = [item.callspec.params["fixture"] for item in request.session.items
                if item.module is request.module and item.originalname == "test_dagster_run_equals_native_run"
                and not item.get_closest_marker("skip")]
    r = Runs(selected, tmp_path_factory.mktemp("differential"))
    yield r
    r.close()
    line = "differential: %(flows)d flows, %(tasks)d tasks, %(artifacts)d artifacts compared" % r.counts
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print("\n" + line)


@pytest.mark.parametrize("fixture", PARAMS)
def test_dagster_run_equals_native_run(runs, fixture):
    native_ps, deployed_ps = runs.result(fixture)
    flow_name = native_ps.split("/")[0]
    native, deployed = snapshot(native_ps), snapshot(deployed_ps)
    diff, compared = differences(native, deployed, IGNORED.get(flow_name, {}))
    assert not diff, "%s: %s and %s differ:\n%s" % (fixture, native_ps, deployed_ps, "\n".join(diff[:40]))
    assert compared > 0
    runs.counts["flows"] += 1
    runs.counts["tasks"] += len(native)
    runs.counts["artifacts"] += compared
    print("%s: %d tasks, %d artifacts compared" % (fixture, len(native), compared))
