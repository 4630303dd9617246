"""Beyond one machine: generated files on PostgreSQL storage, an S3 datastore and separate Dagster processes.

The flows are compiled with the S3 datastore from a copy of tests/flows that is deleted before any server
starts, so every step runs from the code package `create` put in the datastore. Dagster's instance lives in a
real PostgreSQL server; a gRPC code server per definitions file, the webserver and the daemon each run as a
process of their own, with the Postgres password only in their environment. Runs are submitted through the
webserver's GraphQL API and events are published over HTTP, as clients on other machines would. Metaflow's
metadata stays local. Results are read through the Metaflow client and the Dagster instance.
"""

import json
import os
import secrets
import shlex
import shutil
import string
import subprocess
import sys
import urllib.request

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

from metaflow_dagster.runtime import ORIGIN_RUN_TAG, event_asset_key, metaflow_run_id
from tests.e2e.test_shapes import SHAPES as ALL_SHAPES
from tests.helpers import FLOWS, REPO, flow_literal, flow_literals, wait_for
from tests.infra import (  # noqa: F401 (postgres, s3: pytest fixtures)
    BIN,
    DagsterCluster,
    NginxProxy,
    Process,
    deploy,
    deploy_together,
    doc_blocks,
    free_port,
    postgres,
    s3,
)

# Every graph shape of test_shapes.py, compiled into one definitions file (`create --add-flow`, a code package per
# flow) served by one code server, so the whole set costs one server instead of seventeen.
SHAPES_LOCATION = "shapes"
# One flow of each construct runs on the cluster (a split, a nested foreach, switches in a foreach whose cases
# go into a nested foreach's join, a recursive switch, custom start and end names); tests/e2e/test_shapes.py
# and test_differential.py run every shape locally.
SHAPES = [s for s in ALL_SHAPES if s[1] in (
    "Split3Flow", "NestedForeachFlow", "NestedSwitchIntoForeachJoinFlow", "RecursiveSwitchFlow",
    "CustomStartEndFlow")]
TRIGGER = "signed_trigger_flow.py"
RESUME = "resume_flow.py"
CHAIN = ["chain_a_flow.py", "chain_b_flow.py"]
RUN_TIMEOUT = 600
SERVICE_SECRET = "hdr-" + secrets.token_hex(12)  # a Metaflow service auth header: must leak nowhere
EVENT_SECRET = "evt-" + secrets.token_hex(12)    # SignedTriggerFlow's key (MFD_EVENT_SECRET): likewise


def walkthrough():
    """The blocks of docs/deploy.md marked ``<!-- walkthrough: KIND [ARG] -->``, in order: (kind, arg, text)."""
    blocks = doc_blocks("deploy.md", "walkthrough")
    assert [b[0] for b in blocks] == ["database", "file", "create", "ship", "server", "file", "server", "server",
                                      "launch", "check"], "the walkthrough in docs/deploy.md changed: update this test"
    return blocks


def test_deploy_walkthrough(postgres, s3, tmp_path):  # noqa: F811
    """Every command of docs/deploy.md's walkthrough, as written, with this machine's values for its variables.

    Runs first in this module, before the shared cluster exists: its own database, code server, daemon and
    webserver. The flow's source is deleted right after `create`, and the code server loads the file from
    another directory (step 4): issue #8's "moved, source deleted, still runs".
    """
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(REPO, "examples", "hello_flow.py"), src)
    home = tmp_path / "dagster_home"
    home.mkdir()
    values = dict(
        DAGSTER_HOME=str(home), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(postgres.port),
        DAGSTER_PG_DB="walkthrough", DAGSTER_PG_PASSWORD=postgres.password, PGPASSWORD=postgres.password,
        DEFS=str(tmp_path / "defs"), CODE_DIR=str(tmp_path / "code-server-host"), CODE_SERVER_HOST="127.0.0.1",
        CODE_SERVER_PORT=str(free_port()), WEBSERVER_PORT=str(free_port()), METAFLOW_DEFAULT_DATASTORE="s3",
        METAFLOW_DAGSTER_CODE_CACHE=str(tmp_path / "code-cache"),
    )
    env = dict(os.environ, **s3.env(), **values, PATH=BIN + os.pathsep + os.environ["PATH"])
    os.environ.update(values)  # this process reads the instance too (restored after the test)
    os.makedirs(values["DEFS"])
    os.makedirs(values["CODE_DIR"])

    def expand(text):
        return string.Template(text).substitute(env)

    servers, outputs = {}, {}
    try:
        for kind, arg, body in walkthrough():
            if kind == "file":
                with open(expand(arg), "w") as f:
                    f.write(expand(body))
                continue
            if kind == "server":
                servers[arg] = Process(shlex.split(expand(body)), str(tmp_path / (arg + ".log")), env=env,
                                       cwd=str(tmp_path))
                wait_for(lambda n=arg: _serving(n, servers[n], env), 180, "the %s of the walkthrough" % arg, 1)
                continue
            for line in body.strip().splitlines():
                proc = subprocess.run(shlex.split(expand(line), comments=True), cwd=str(src), env=env,
                                      capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, "%s\n%s%s" % (line, proc.stdout, proc.stderr)
                outputs[kind] = proc.stdout
            if kind == "create":
                shutil.rmtree(src)  # only the definitions file travels
                src.mkdir()
            if kind == "ship":
                os.unlink(os.path.join(values["DEFS"], "HelloDagsterFlow.py"))  # a move, to be sure
            if kind == "launch":
                with _instance(home) as inst:
                    (run_id,) = [r.run_id for r in inst.get_runs()]
                wait_for(lambda r=run_id: _finished(home, r), RUN_TIMEOUT, "the walkthrough's run", 2)
                with _instance(home) as inst:
                    assert inst.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS, servers["daemon"].log_tail()
    finally:
        for server in servers.values():
            server.stop(grace=5)
    assert outputs["check"].strip() == "['hi, mercury!', 'hi, venus!', 'hi, earth!']"
    package = flow_literal(os.path.join(values["CODE_DIR"], "HelloDagsterFlow.py"))["code_package"]
    assert package["url"].startswith("s3://mf-datastore/metaflow/HelloDagsterFlow/data/")
    assert os.listdir(values["METAFLOW_DAGSTER_CODE_CACHE"]) == [package["sha"]]


def test_without_a_code_package_a_moved_file_names_the_missing_flow_file(s3, project, tmp_path):  # noqa: F811
    """`--code-package never` with a remote datastore: the file needs the flow source where it runs, and
    loading it without one fails with one error naming the file (the walkthrough shows the packaged case)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(FLOWS, "linear_flow.py"), src)
    os.environ.update(s3.env(), METAFLOW_DEFAULT_DATASTORE="s3")  # restored after the test
    defs, res = project.create(str(src / "linear_flow.py"), args=["--code-package", "never"])
    assert "Uploaded the code package" not in res.stderr and "code_package" not in flow_literal(defs)
    shutil.rmtree(src)
    res = project.run([sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", defs])
    assert res.returncode != 0 and "StaleDefinitionsError" in res.stderr, res
    assert "linear_flow.py" in res.stderr and "cannot be read" in res.stderr, res


def _instance(home):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(home))


def _finished(home, run_id):
    with _instance(home) as inst:
        return inst.get_run_by_id(run_id).is_finished


def _serving(name, server, env):
    """Whether the walkthrough's server ``name`` is up: health check, heartbeat or HTTP answer."""
    assert server.alive(), "%s exited:\n%s" % (name, server.log_tail())
    if name == "code-server":
        argv = [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", env["CODE_SERVER_PORT"]]
        return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode == 0
    if name == "daemon":
        with _instance(env["DAGSTER_HOME"]) as inst:
            return "SENSOR" in inst.get_daemon_heartbeats()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/server_info" % env["WEBSERVER_PORT"], timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def dist(postgres, s3, tmp_path_factory):  # noqa: F811
    root = str(tmp_path_factory.mktemp("dist"))
    src, defs_dir = os.path.join(root, "src"), os.path.join(root, "defs")
    os.makedirs(src)
    os.makedirs(defs_dir)
    shapes = [s[0] for s in SHAPES]
    fixtures = [TRIGGER, RESUME] + CHAIN
    for fixture in shapes + fixtures:
        shutil.copy(os.path.join(FLOWS, fixture), src)
    env = dict(
        os.environ, **s3.env(),
        METAFLOW_DEFAULT_DATASTORE="s3",
        METAFLOW_DAGSTER_CODE_CACHE=os.path.join(root, "code-cache"),
        METAFLOW_SERVICE_HEADERS=json.dumps({"x-api-key": SERVICE_SECRET}),
    )
    jobs = deploy(src, fixtures, defs_dir, env)
    shapes_jobs = deploy_together(src, shapes, os.path.join(defs_dir, "shapes.py"), env)
    env["MFD_EVENT_SECRET"] = EVENT_SECRET  # where sensors run (the code servers), not at create
    shutil.rmtree(src)  # from here on, only the code packages hold the flows' code

    cluster = DagsterCluster(root, postgres, postgres.create_database("dist"), env)
    for job, defs in sorted(jobs.items()):
        cluster.add_code_server(job, defs)
    cluster.add_code_server(SHAPES_LOCATION, shapes_jobs[SHAPES[0][1]])
    jobs.update(shapes_jobs)
    # The test process reads results with the Metaflow client: boto3 finds moto through AWS_ENDPOINT_URL_S3.
    client_env = {k: v for k, v in s3.env().items() if k.startswith("AWS_")}
    os.environ.update(client_env, AWS_ENDPOINT_URL_S3=s3.url, DAGSTER_PG_PASSWORD=postgres.password)
    try:
        cluster.start()
        cluster.jobs = jobs
        cluster.s3 = s3
        cluster.postgres = postgres
        yield cluster
    finally:
        cluster.stop()
        for k in list(client_env) + ["AWS_ENDPOINT_URL_S3", "DAGSTER_PG_PASSWORD"]:
            os.environ.pop(k, None)


@pytest.fixture(scope="module")
def launched(dist):
    """Every run the tests below check, submitted at once so they share the cluster's time."""
    runs = {flow: dist.launch(SHAPES_LOCATION, flow) for _, flow, _ in SHAPES}
    # ResumeFlow's item 1 fails until the marker file exists; the resume test creates it.
    runs["ResumeFlow"] = dist.launch("ResumeFlow", "ResumeFlow", config=_resume_config(_marker(dist)))
    runs["chain"] = dist.launch("chain_user_tester_ChainAFlow", "chain_user_tester_ChainAFlow",
                                config={"ops": {"start": {"config": {"seed": 7}}}})
    return runs


def _resume_config(marker):
    return {"ops": {"start": {"config": {"marker": marker}}}}


def _marker(cluster):
    return os.path.join(cluster.root, "resume-marker")


def metaflow_run(flow_name, drun):
    from metaflow import Run, namespace

    namespace(None)
    return Run("%s/%s" % (flow_name, metaflow_run_id(drun.run_id, drun.tags)))


def runs_of(cluster, job):
    with cluster.instance() as inst:
        return inst.get_runs(filters=RunsFilter(job_name=job))


def test_every_shape_runs_from_the_code_package(dist, launched):
    ids = [launched[flow] for _, flow, _ in SHAPES]
    finished = dist.wait_runs(ids, RUN_TIMEOUT)
    failed = [flow for _, flow, _ in SHAPES if finished[launched[flow]].status != DagsterRunStatus.SUCCESS]
    assert not failed, "\n".join(dist.explain(launched[flow]) for flow in failed)
    for _, flow, expected in SHAPES:
        defs = dist.jobs[flow]
        package = flow_literals(defs)[flow]["code_package"]
        run = metaflow_run(flow, finished[launched[flow]])
        assert run.successful and run.end_task.data.result == expected, flow
        for step in run:
            for task in step:
                meta = task.metadata_dict
                # Artifacts went to S3, and the task ran the packaged code (its source was deleted).
                assert (meta["ds-type"], meta["ds-root"]) == ("s3", "s3://mf-datastore/metaflow"), task.pathspec
                assert json.loads(meta["code-package"])["sha"] == package["sha"], task.pathspec
        assert b"class %s(FlowSpec)" % flow.encode() in run.end_task.code.flowspec
    keys = dist.s3.keys("metaflow/NestedForeachFlow/")
    assert any("/data/" in k for k in keys), "artifacts are in the S3 datastore"
    # Other tests of the session run the same flow on the local datastore: none of this run's artifacts is
    # stored there (no blob written since this run started).
    started = metaflow_run("NestedForeachFlow", finished[launched["NestedForeachFlow"]]).created_at.timestamp()
    local = os.path.join(os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"], ".metaflow", "NestedForeachFlow", "data")
    written = [os.path.join(d, f) for d, _, files in os.walk(local) for f in files
               if os.path.getmtime(os.path.join(d, f)) >= started - 1]
    assert not written, "no artifact may be stored on local disk: %s" % written[:3]


def test_events_through_an_authenticating_proxy(dist):
    """docs/deploy.md's nginx (TLS, basic auth) in front of the webserver; SignedTriggerFlow takes signed events.

    A client elsewhere knows the proxy's URL, its certificate and the password, and (to sign) the event key:
    no Dagster home, no datastore credentials. Without the password nothing is written; an unsigned event
    gets through the proxy but is skipped with its reason; the signed one, with shell syntax in a field,
    starts exactly one run, which gets the field as text.
    """
    proxy = NginxProxy(dist.root, dist.port).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_", "METAFLOW_S3"))}
        env.update(SSL_CERT_FILE=proxy.cafile, PROXY_AUTH="%s:%s" % (proxy.user, proxy.password),
                   WRONG_AUTH="%s:nope" % proxy.user, MFD_EVENT_SECRET=EVENT_SECRET)

        def publish(payload, *auth):
            argv = [sys.executable, "-m", "metaflow_dagster.events", "publish", "signed.ready", "--url", proxy.url,
                    "--payload", json.dumps(payload), *auth]
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

        with dist.instance() as inst:
            before = inst.fetch_materializations(event_asset_key("signed.ready"), limit=100).records
        for auth in ([], ["--basic-auth-env", "WRONG_AUTH"]):
            refused = publish({"who": "stranger"}, "--secret-env", "MFD_EVENT_SECRET", *auth)
            assert refused.returncode == 1 and "answered 401" in refused.stderr, refused.stderr
        unsigned = publish({"who": "unsigned"}, "--basic-auth-env", "PROXY_AUTH")
        assert unsigned.returncode == 0, unsigned.stderr
        who = "http; $(touch /tmp/pwned) `id` ünï"
        signed = publish({"who": who, "alpha": 0.75}, "--basic-auth-env", "PROXY_AUTH",
                         "--secret-env", "MFD_EVENT_SECRET")
        assert signed.returncode == 0, signed.stderr
        event_id = signed.stdout.strip()

        runs = wait_for(lambda: [r for r in runs_of(dist, "SignedTriggerFlow") if r.is_finished], RUN_TIMEOUT,
                        "the triggered run", interval=2)
        assert len(runs) == 1 and runs[0].status == DagsterRunStatus.SUCCESS, dist.explain(runs[0].run_id)
        run = metaflow_run("SignedTriggerFlow", runs[0])
        assert run.end_task.data.values == (0.75, who)
        assert run.trigger.event.name == "signed.ready" and run.trigger.event.id == event_id
        assert not os.path.exists("/tmp/pwned")
        with dist.instance() as inst:
            written = inst.fetch_materializations(event_asset_key("signed.ready"), limit=100).records
            reasons = [o.asset_observation.metadata["reason"].value
                       for o in inst.fetch_observations(event_asset_key("signed.ready"), limit=10).records]
        assert len(written) - len(before) == 2, "the two refused posts wrote nothing"
        assert reasons == ["it is not signed (MFD_EVENT_SECRET requires a 'signature' field)"]
        assert [r.run_id for r in runs_of(dist, "SignedTriggerFlow")] == [runs[0].run_id]
        print("proxy: 2 posts refused with 401, 1 unsigned skipped, 1 signed -> 1 run")
    finally:
        proxy.stop()


def test_trigger_on_finish_chain_runs_across_code_servers(dist, launched):
    """ChainAFlow's end event, written to Postgres by its run worker, starts ChainBFlow in another location."""
    head = dist.wait_runs([launched["chain"]], RUN_TIMEOUT)[launched["chain"]]
    assert head.status == DagsterRunStatus.SUCCESS
    a = metaflow_run("ChainAFlow", head)
    (b_drun,) = wait_for(lambda: [r for r in runs_of(dist, "chain_user_tester_ChainBFlow") if r.is_finished],
                           RUN_TIMEOUT, "ChainBFlow", interval=2)
    assert b_drun.status == DagsterRunStatus.SUCCESS, dist.explain(b_drun.run_id)
    b = metaflow_run("ChainBFlow", b_drun)
    assert b.data.upstream == a.pathspec and b.data.total == 70 + 71 + 72
    assert b.trigger.run.pathspec == a.pathspec


def test_resume_clones_finished_tasks_from_s3(dist, launched):
    origin_drun = dist.wait_runs([launched["ResumeFlow"]], RUN_TIMEOUT)[launched["ResumeFlow"]]
    assert origin_drun.status == DagsterRunStatus.FAILURE
    origin = metaflow_run("ResumeFlow", origin_drun)
    # The run's parameters come back from the S3 datastore, as `dagster resume` reads them.
    from metaflow_dagster.deployments import origin_parameters

    params = origin_parameters(flow_literal(dist.jobs["ResumeFlow"]), origin.id)
    assert params == {"marker": _marker(dist)}
    with open(_marker(dist), "w") as f:
        f.write("item 1 succeeds now")
    rid = dist.launch("ResumeFlow", "ResumeFlow", config=_resume_config(params["marker"]),
                      tags={ORIGIN_RUN_TAG: origin.id})
    drun = dist.wait_runs([rid], RUN_TIMEOUT)[rid]
    assert drun.status == DagsterRunStatus.SUCCESS, dist.explain(rid)
    run = metaflow_run("ResumeFlow", drun)
    assert run.data.result == [0, 10, 20]
    body, origin_body = {t.id: t for t in run["body"]}, {t.id: t for t in origin["body"]}
    for tid in ("t-0", "t-2"):
        assert body[tid].metadata_dict.get("origin-task-id") == tid
        assert body[tid].data.pid == origin_body[tid].data.pid, "a cloned task is not executed again"
    assert "origin-task-id" not in body["t-1"].metadata_dict


def test_no_secret_in_generated_files_logs_or_op_metadata(dist, launched):
    dist.wait_runs(list(launched.values()), RUN_TIMEOUT)
    secret_values = [dist.s3.secret, dist.postgres.password, SERVICE_SECRET, EVENT_SECRET]
    files = sorted(set(dist.jobs.values()))
    for defs in files:
        text = open(defs).read()
        leaked = [s for s in secret_values if s in text]
        assert not leaked, "%s holds a secret" % defs
        assert "code_package" in text
    texts = [dist.logs()]
    with dist.instance() as inst:
        for drun in inst.get_runs():
            for event in inst.all_logs(drun.run_id):
                texts.append(event.message or "")
                texts.append(event.user_message or "")
                data = event.dagster_event.event_specific_data if event.dagster_event else None
                metadata = getattr(data, "metadata", None) or {}
                texts += ["%s=%s" % (k, getattr(v, "value", v)) for k, v in metadata.items()]
            texts.append(json.dumps(drun.tags))
    steps = sum(1 for t in texts if "Metaflow step" in t)
    assert steps > 0, "the scan read the runs' step logs"
    blob = "\n".join(texts)
    for s in secret_values:
        assert s not in blob
    print("scanned %d generated files, %d log lines, %d step messages: 0 secrets"
          % (len(files), len(texts), steps))


def test_run_events_name_ops_by_step(dist, launched):
    """Op events in Postgres storage are complete: one STEP_SUCCESS per leaf task of the nested foreach (whose
    ops carry the job's prefix in a file of several flows)."""
    rid = launched["NestedForeachFlow"]
    dist.wait_runs([rid], RUN_TIMEOUT)
    with dist.instance() as inst:
        keys = sorted(e.dagster_event.step_key for e in inst.all_logs(rid, of_type=DagsterEventType.STEP_SUCCESS))
    leaves = [k for k in keys if k.startswith("NestedForeachFlow__leaf")]
    assert leaves == ["NestedForeachFlow__leaf[%s]" % i for i in ("0_0", "0_1", "1_0", "1_1")]
