"""`python flow.py dagster ...`: compile a Metaflow flow into a Dagster definitions file, deploy it, run it.

The group runs after Metaflow's own top-level processing (config mutators, `--with` decorators, step
decorator init), exactly as `argo-workflows` does, so the graph read here is the one tasks will run.

A deployment is a definitions file recorded in `$DAGSTER_HOME/metaflow/deployments/` under its job name and
served, with every other deployment, by the one code location `metaflow` of
`$DAGSTER_HOME/metaflow/workspace.yaml` (metaflow_dagster/deployments.py); `create --add-flow` puts several
flows into one file, one deployment named after the first job. `create` checks that the file loads, writes
and records it, and waits until a running webserver serves it; `trigger`, `resume`, `status`,
`terminate`, `delete` and `list` act on the deployment named `--name`, by default this flow's job name. They
read what they need from the registry and the generated file's FLOW literal, never from this flow's graph,
so the stand-in flow file that `DeployedFlow.from_deployment` writes (parameters only) drives them as well
as the real one does. Everything that could be refused is checked before a run is submitted or the
Deployer's attribute file is written.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

from metaflow import parameters
from metaflow._vendor import click

from metaflow_dagster import deployments as dep
from metaflow_dagster import location as loc

from .dagster_compiler import (
    CODE_PACKAGE_MODES,
    EXECUTORS,
    _job_name,
    build_ir,
    compile_ir,
    executor_options,
    package_code,
)
from .exception import DagsterException


@click.group()
def cli():
    pass


@cli.group(help="Commands related to running this flow on Dagster.")
@click.option(
    "--name",
    default=None,
    type=str,
    help="The deployment (Dagster job) to act on. Default: this flow's job name (project_branch_Flow under @project).",
)
@click.pass_obj
def dagster(obj, name=None):
    obj.check(obj.graph, obj.flow, obj.environment, pylint=obj.pylint)
    obj.dagster_job = _job_name(obj.flow.name)
    obj.deployment_name = name or obj.dagster_job


def _deployment(obj, what):
    """The deployment this command acts on (name, DAGSTER_HOME, definitions file, FLOW literal)."""
    d = dep.open_deployment(obj.deployment_name, what="`dagster %s`" % what)
    if d.flow["name"] != obj.flow.name:
        raise DagsterException("deployment *%s* runs flow *%s*, not *%s*" % (d.name, d.flow["name"], obj.flow.name))
    return d


def _write_attributes(path, payload):
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f)


def _echo_serving(obj, home):
    obj.echo("Serve every deployed flow with: %s" % " ".join(dep.serve_command(home)))


@dagster.command(help="Compile this flow into a Dagster definitions file and deploy it to DAGSTER_HOME.")
@click.argument("file", required=False)
@click.option("--tag", "tags", multiple=True, default=None, help="Tag every run of this flow (repeatable).")
@click.option(
    "--namespace",
    default=None,
    help="Namespace of Metaflow client calls inside the steps (Metaflow's `step --namespace`). "
    "Default: the deploying user's, user:<name>.",
)
@click.option("--max-workers", default=16, show_default=True, type=int, help="Maximum number of concurrent ops.")
@click.option("--workflow-timeout", default=0, type=int, help="Fail a run that takes longer (seconds).")
@click.option(
    "--max-num-splits", default=100, show_default=True, type=int,
    help="Fail a run whose foreach yields more splits, as `run --max-num-splits` does.",
)
@click.option(
    "--emit-step-events/--no-emit-step-events", default=False, show_default=True,
    help="Also publish metaflow.<flow>.<step> when each task succeeds (the end event is always published).",
)
@click.option(
    "--forward-env", "forward_env", multiple=True, metavar="NAME",
    help="Also give tasks this variable (or, as NAME*, every variable starting with NAME) from the environment "
    "of the worker that runs them (repeatable). Only the name is written into the definitions.",
)
@click.option(
    "--code-package", type=click.Choice(CODE_PACKAGE_MODES), default="auto", show_default=True,
    help="Package the flow's code into the datastore and run steps from it: 'auto' when the datastore is not local.",
)
@click.option(
    "--add-flow", "add_flows", multiple=True, metavar="FLOW_FILE",
    help="Compile this flow file into the same definitions file, one code location with every flow's job, "
    "schedule and sensors (repeatable). It gets this command's top-level and create options.",
)
@click.option(
    "--executor", type=click.Choice(EXECUTORS), default=None,
    help="The Dagster executor that runs the job's ops: the runtime's threads of the run worker (the default), "
    "Dagster's multiprocess executor, or Dagster's celery, k8s (the default with @kubernetes) and docker "
    "executors, whose ops run on other hosts (docs/deploy.md).",
)
@click.option(
    "--executor-config", default=None, metavar="JSON",
    help="The executor's config as a JSON object, such as '{\"broker\": {\"env\": \"DAGSTER_CELERY_BROKER_URL\"}}': "
    "the defaults the launchpad shows for the run config's `execution` section. Name secrets by variable "
    "({\"env\": NAME}); values are written into the definitions file.",
)
@click.option(
    "--celery-queue", "celery_queues", multiple=True, metavar="STEP=QUEUE",
    help="With --executor celery, send the ops of STEP to Celery queue QUEUE (op tag dagster-celery/queue), "
    "served only by the workers started with `-q QUEUE` (repeatable).",
)
@click.option("--ir-only", is_flag=True, default=False, help="Print the flow IR as JSON and write nothing.")
@click.option("--deployer-attribute-file", default=None, hidden=True)
@click.pass_obj
def create(obj, file, tags, namespace, max_workers, workflow_timeout, max_num_splits, emit_step_events, forward_env,
           code_package, executor, executor_config, celery_queues, add_flows, ir_only, deployer_attribute_file):
    if obj.deployment_name != obj.dagster_job:
        raise DagsterException(
            "--name %s is not supported by `create`: a deployment is named after its job, *%s*"
            % (obj.deployment_name, obj.dagster_job)
        )
    if namespace is not None and not namespace.strip():
        # Metaflow's `run --namespace=` means the global namespace, but a step given `--namespace=` checks
        # every client object against the empty tag and fails; a step that wants every run calls
        # `namespace(None)` itself.
        raise DagsterException(
            "--namespace is empty: steps cannot be given the global namespace (with `step --namespace=` every "
            "client call in a step fails). Give a namespace, such as user:NAME or a tag, or call "
            "namespace(None) in the step"
        )
    for _, param in obj.flow._get_parameters():
        command, option = _run_option_named(param.name)
        if command:
            raise DagsterException(
                "Parameter *%s* of flow *%s* has the name of the `dagster %s` %s, so `%s` could not tell "
                "them apart: rename the Parameter" % (param.name, obj.flow.name, command, option,
                                                      "trigger` and `resume" if command == "trigger" else command)
            )
    if max_workers < 1:
        raise DagsterException("--max-workers must be at least 1 (got %d)" % max_workers)
    if workflow_timeout < 0:
        raise DagsterException("--workflow-timeout must be zero or positive (got %d)" % workflow_timeout)
    if max_num_splits < 1:
        raise DagsterException("--max-num-splits must be at least 1 (got %d)" % max_num_splits)
    ir = build_ir(
        obj, tags=tags or (), namespace=namespace, max_workers=max_workers, workflow_timeout=workflow_timeout,
        emit_step_events=emit_step_events, forward_env=forward_env, max_num_splits=max_num_splits,
        executor=executor_options(executor, executor_config, celery_queues),
    )
    if ir_only and add_flows:
        raise DagsterException("--ir-only prints the IR of one flow: run it on each flow file, not with --add-flow")
    # Before the IR is printed too: it is exactly what `create` compiles (the package is content-addressed, so
    # uploading it again stores nothing new).
    ir["flow"]["code_package"] = package_code(obj, code_package)
    if ir_only:  # in the IR's own order: JSON values (defaults, configs) keep their keys' order
        click.echo(json.dumps(ir, indent=2))
        return
    irs = [ir]
    if add_flows:
        create_args = [a for t in tags or () for a in ("--tag", t)] + [
            "--max-workers", str(max_workers), "--workflow-timeout", str(workflow_timeout),
            "--max-num-splits", str(max_num_splits),
            "--emit-step-events" if emit_step_events else "--no-emit-step-events", "--code-package", code_package,
        ] + (["--namespace", namespace] if namespace is not None else []) + [
            a for name in forward_env for a in ("--forward-env", name)] + (
            ["--executor", executor] if executor else []) + (
            ["--executor-config", executor_config] if executor_config else [])
        irs += _added_irs(obj, ir, add_flows, create_args)
    home = dep.dagster_home()
    name = ir["flow"]["job_name"]
    jobs = [x["flow"]["job_name"] for x in irs]
    if not file:
        if not home:
            raise DagsterException(
                "give the definitions file to write (`dagster create FILE`), or set DAGSTER_HOME to deploy there"
            )
        file = os.path.join(dep.Workspace(home).dir, "definitions", name + ".py")
        os.makedirs(os.path.dirname(file), exist_ok=True)
    file = os.path.abspath(file)
    if home:
        _check_not_served_elsewhere(dep.Workspace(home), name, jobs)
    _write_checked(file, compile_ir(*irs), [x["flow"]["name"] for x in irs])
    flows = ", ".join("*%s*" % x["flow"]["name"] for x in irs)
    obj.echo("Wrote Dagster definitions for %s to *%s*." % (flows, file), bold=True)
    if home:
        _deploy(obj, home, name, file, jobs)
    else:
        obj.echo("Registration skipped because DAGSTER_HOME is not set.")
        obj.echo("Serve them with: dagster dev -f %s" % file)
    _write_attributes(
        deployer_attribute_file,
        {
            "name": name,
            "flow_name": obj.flow.name,
            "metadata": obj.metadata.metadata_str(),
            "additional_info": {"definitions_file": file, "dagster_home": home, "jobs": jobs},
        },
    )


def _write_checked(path, text, flow_names):
    """Write the definitions ``text`` to ``path`` only once they load as a code server loads them: in a fresh
    process, importing the file and resolving every job, config schema, schedule and sensor
    (``python -m metaflow_dagster.location check``). A file that does not load is never written."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".py", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        proc = subprocess.run([sys.executable, "-m", "metaflow_dagster.location", "check", tmp],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": (proc.stderr.strip() or "no answer").splitlines()[-1]}
        if not result.get("ok"):
            raise DagsterException(
                "the Dagster definitions of flow%s %s do not load, so nothing was written or deployed: %s"
                % ("s" if len(flow_names) > 1 else "", ", ".join("*%s*" % n for n in flow_names), result["error"])
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _deploy(obj, home, name, file, jobs):
    """Register the definitions ``file`` as deployment ``name`` of ``home`` and, when a Dagster webserver
    serves that instance, wait until it (and so its daemon) serves the new jobs."""
    workspace = dep.Workspace(home)
    written = dep.ensure_instance_config(home)
    if written:
        obj.echo("Wrote %s (this Dagster home had none): runs queued by `trigger` and by sensors start within a "
                 "second." % written)
    workspace.register(name, file)
    if len(jobs) > 1:
        obj.echo("Deployed the jobs %s (one deployment, *%s*) to %s." % (", ".join("*%s*" % j for j in jobs), name, home))
    else:
        obj.echo("Deployed *%s* to %s." % (name, home))
    _echo_serving(obj, home)
    url = dep.find_webserver(home)
    if url is None:
        obj.echo("No Dagster webserver serves %s yet: start it with the command above. If it runs elsewhere (or "
                 "behind a proxy), set %s to its URL." % (home, dep.WEBSERVER_URL_ENV))
        return
    state = dep.ensure_served(url, home, jobs, loc.file_digest(file))
    obj.echo("The Dagster webserver at %s serves %s: %s" % (
        url, "it" if len(jobs) == 1 else "them", ", ".join(dep.job_url(url, state.repositories[j], j) for j in jobs)))


def _added_irs(obj, ir, paths, create_args):
    """The IRs of the `--add-flow` flow files, in order, with their job names checked against ``ir``'s.

    Each flow is processed by its own Metaflow, as `python FILE <top-level options> dagster create --ir-only
    <create options>` (an argv list, never a shell), run side by side. Its top-level options are the ones
    that decide what the tasks of the one file run with, read from this process (datastore and root,
    metadata, environment, event logger, monitor, package suffixes, `--with`, pylint); @project's
    `--branch`/`--production` go as METAFLOW_FLOW_BRANCH/METAFLOW_FLOW_PRODUCTION, the variables Metaflow
    reads those options from, so a flow without @project ignores them. Configs belong to one flow: an added
    flow gets its own defaults (docs/deploy-cli.md).
    """
    for path in paths:
        if not os.path.isfile(path):
            raise DagsterException("--add-flow %s: no such flow file" % path)
    top = [
        "--quiet",
        "--metadata=%s" % obj.metadata.TYPE,
        "--environment=%s" % obj.environment.TYPE,
        "--datastore=%s" % obj.flow_datastore.TYPE,
        "--datastore-root=%s" % ir["settings"]["datastore_root"],
        "--event-logger=%s" % obj.event_logger.TYPE,
        "--monitor=%s" % obj.monitor.TYPE,
        "--package-suffixes=%s" % ",".join(obj.package_suffixes),
    ] + ["--with=%s" % spec for spec in obj.tl_decospecs] + ([] if obj.pylint else ["--no-pylint"])
    env = dict(os.environ)
    if ir["options"]["branch"]:
        env["METAFLOW_FLOW_BRANCH"] = ir["options"]["branch"]
    if ir["options"]["production"]:
        env["METAFLOW_FLOW_PRODUCTION"] = "true"
    procs = [
        (path, subprocess.Popen(
            [sys.executable, os.path.abspath(path)] + top + ["dagster", "create", "--ir-only"] + create_args,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        ))
        for path in paths
    ]
    outputs = []
    for path, proc in procs:  # every process ends before any error is raised
        out, err = proc.communicate()
        outputs.append((path, proc.returncode, out, err))
    irs, files = [], {ir["flow"]["job_name"]: ir["flow"]["file"]}
    for path, code, out, err in outputs:
        if code != 0:
            tail = "\n".join((err.strip() or out.strip()).splitlines()[-25:])
            raise DagsterException("cannot add the flow of %s: Metaflow refused it (exit %d):\n%s" % (path, code, tail))
        added = _parse_ir(path, out)
        job = added["flow"]["job_name"]
        if job in files:
            raise DagsterException(
                "%s and %s both deploy the job *%s*: one definitions file cannot hold two jobs of one name"
                % (files[job], added["flow"]["file"], job)
            )
        files[job] = added["flow"]["file"]
        irs.append(added)
    return irs


def _parse_ir(path, out):
    """The IR that `dagster create --ir-only` printed last in ``out``, after anything the flow printed."""
    start = 0 if out.startswith("{\n") else out.rfind("\n{\n") + 1
    try:
        return json.loads(out[start:])
    except ValueError:
        raise DagsterException("cannot add the flow of %s: `dagster create --ir-only` printed no IR" % path) from None


def _check_not_served_elsewhere(workspace, deployment, jobs):
    """Refuse to deploy ``jobs`` as deployment ``deployment`` when another deployment already has one.

    A job deployed twice would have two sets of sensors and schedules, each starting its own runs.
    """
    for job in jobs:
        found = workspace.find(job)
        if found and found[0] != deployment:
            raise DagsterException(
                "job *%s* is already deployed as part of deployment *%s* (%s): delete that deployment first "
                "(`python <its flow file> dagster delete`)" % (job, found[0], found[1])
            )


def _submit(obj, d, values, tags, opts, what):
    """Launch one run of deployment ``d`` through the running webserver, tell the user (and the Deployer) its
    ids, optionally wait for it. ``opts`` holds the run options (`--wait`, `--run-id-file`,
    `--deployer-attribute-file`). Nothing is launched unless every check passes and the webserver serves the
    job from the deployed file (deployments.ensure_served)."""
    flow = d.flow
    if os.path.abspath(sys.argv[0]) == flow["file"]:
        with open(flow["file"], "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != flow["file_sha256"]:
                raise DagsterException(
                    "%s changed after `dagster create`: deploy it again before running *%s*" % (flow["file"], d.name)
                )
    from metaflow_dagster.runtime.contract import RUN_ID_TAG

    config = dep.run_config(flow, values)
    url = dep.find_webserver(d.home)
    if url is None:
        raise DagsterException(
            "no Dagster webserver serves DAGSTER_HOME=%s, so the run of *%s* was not submitted: %s. If it runs "
            "elsewhere (or behind a proxy), set %s to its URL." % (d.home, d.name, dep.how_to_serve(d.home),
                                                                    dep.WEBSERVER_URL_ENV))
    jobs = dep.Workspace.jobs_of(d.defs)
    state = dep.ensure_served(url, d.home, jobs or [d.name], loc.file_digest(d.defs))
    run_id = dep.new_run_id()
    pathspec = "%s/%s" % (flow["name"], run_id)
    dagster_run_id = dep.launch(url, state.location, state.repositories[d.name], d.name, config,
                                dict(tags, **{RUN_ID_TAG: run_id}))
    with dep.instance(d.home) as inst:
        if inst.get_run_by_id(dagster_run_id) is None:
            raise DagsterException(
                "the Dagster webserver at %s launched run %s in another Dagster instance than DAGSTER_HOME=%s: "
                "start it with that DAGSTER_HOME" % (url, dagster_run_id, d.home))
        daemon = dep.daemon_running(inst)
    if opts["run_id_file"]:
        with open(opts["run_id_file"], "w") as f:
            f.write(run_id)
    link = dep.run_url(dagster_run_id, url)
    _write_attributes(
        opts["deployer_attribute_file"],
        {
            "name": d.name,
            "metadata": obj.metadata.metadata_str(),
            "pathspec": pathspec,
            "dagster_run_id": dagster_run_id,
            "dagster_home": d.home,
            "dagster_ui_url": link,
        },
    )
    obj.echo("%s *%s* on Dagster (run *%s*, Dagster run %s)." % (what, d.name, pathspec, dagster_run_id), bold=True)
    obj.echo("See the run in the Dagster UI at %s" % link)
    if not daemon:
        obj.echo("No Dagster daemon is running for %s: the run stays queued until one starts." % d.home)
        _echo_serving(obj, d.home)
    if opts["wait"]:
        status = dep.wait(d.home, dagster_run_id)
        obj.echo("Run *%s* %s." % (pathspec, status))
        if status != "SUCCEEDED":
            with dep.instance(d.home) as inst:
                reason = dep.failure_reason(inst, dagster_run_id)
            raise DagsterException("run *%s* of *%s* failed on Dagster (%s):\n%s" % (pathspec, d.name, link, reason))


_RUN_OPTIONS = [
    click.option("--wait", is_flag=True, default=False, help="Wait for the run to finish; fail if it fails."),
    click.option("--run-id-file", default=None, type=str, help="Write the Metaflow run id to this file."),
    click.option("--deployer-attribute-file", default=None, type=str, hidden=True),
]


# Parameters become options of `trigger` and `resume` beside their own options and arguments, and click passes
# each by its keyword argument (`-` read as `_`), so a Parameter may not take their names. The run options are
# options of both commands; `resume` adds --origin-run-id and its STEP_TO_RERUN argument.
_RUN_OPTION_NAMES = [
    ("trigger", "option --wait"), ("trigger", "option --run-id-file"),
    ("trigger", "option --deployer-attribute-file"),
    ("resume", "option --origin-run-id"), ("resume", "argument STEP_TO_RERUN"),
]


def _run_option_named(name):
    """(command, "option --x" or "argument X") of the `trigger` or `resume` option or argument that a Parameter
    called ``name`` would collide with, else (None, None)."""
    key = name.replace("-", "_").lower()
    for command, option in _RUN_OPTION_NAMES:
        if option.split()[-1].lstrip("-").replace("-", "_").lower() == key:
            return command, option
    return None, None


def _run_options(cmd):
    for option in reversed(_RUN_OPTIONS):
        cmd = option(cmd)
    return cmd


def _given_parameters(obj, kwargs):
    """Parameter name -> value of the flow's Parameters given on the command line (click's ``kwargs``), as the
    start op's config takes them: a deploy-time value (IncludeFile) is evaluated here, as `trigger` does."""
    values = {}
    for _, param in obj.flow._get_parameters():
        if param.IS_CONFIG_PARAMETER:
            continue
        value = kwargs.get(param.name.replace("-", "_").lower())
        if isinstance(value, parameters.DelayedEvaluationParameter):
            value = value(return_str=True)
        elif value is not None and isinstance(param.kwargs.get("type"), parameters.JSONTypeClass):
            value = _json_text(obj.flow.name, param.name, value)
        if value is not None:
            values[param.name] = value
    return values


def _json_text(flow, name, value):
    """A JSONType Parameter's value, as click parsed it, back as JSON text (what the start op's config takes).

    A string is a JSON string value, as for `run` (`--spec '"a"'`, or the Deployer's `spec="a"`), except one
    that starts as a JSON object or array and is not one: that is JSON text gone wrong (`spec="{bad"`), and is
    refused before anything is launched.
    """
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            json.loads(value)
        except ValueError as e:
            raise DagsterException("parameter *%s* of flow *%s*: %r is not valid JSON (%s)" % (name, flow, value, e)) \
                from None
    return json.dumps(value)


def _optional_parameters(cmd):
    """The flow's Parameters as options of ``cmd`` (Metaflow's add_custom_parameters, types and validation as
    for `trigger`), none required and none with a default: an option not given is None, so `resume` tells a
    Parameter the caller left out (it keeps the origin run's value) from one given its default value."""
    cmd = parameters.add_custom_parameters(deploy_mode=False)(cmd)
    for param in cmd.params:
        if param not in cmd.original_params:
            param.required = False
            param.default = None
            param.show_default = False
    return cmd


@parameters.add_custom_parameters(deploy_mode=False)
@dagster.command(help="Run the deployed flow on the Dagster instance in DAGSTER_HOME.")
@_run_options
@click.pass_obj
def trigger(obj, wait=False, run_id_file=None, deployer_attribute_file=None, **kwargs):
    d = _deployment(obj, "trigger")
    opts = {"wait": wait, "run_id_file": run_id_file, "deployer_attribute_file": deployer_attribute_file}
    _submit(obj, d, _given_parameters(obj, kwargs), {}, opts, "Triggered")


@_optional_parameters
@dagster.command(
    help="Resume a run of the deployed flow: reuse its finished tasks, run the rest again. Parameters given "
    "apply to the resumed run (the tasks that run again see them); the others keep the origin run's values."
)
@click.argument("step-to-rerun", required=False)
@click.option("--origin-run-id", required=True, help="The Metaflow run id of the run to resume.")
@_run_options
@click.pass_obj
def resume(obj, step_to_rerun=None, origin_run_id=None, wait=False, run_id_file=None, deployer_attribute_file=None,
           **kwargs):
    from metaflow_dagster.runtime.contract import ORIGIN_RUN_TAG, RESUME_STEP_TAG

    d = _deployment(obj, "resume")
    opts = {"wait": wait, "run_id_file": run_id_file, "deployer_attribute_file": deployer_attribute_file}
    name = d.flow["name"]
    if step_to_rerun is not None and step_to_rerun not in d.flow["steps"]:
        raise DagsterException(
            "cannot resume *%s/%s* from *%s*: flow *%s* has no such step (steps: %s)"
            % (name, origin_run_id, step_to_rerun, name, ", ".join(d.flow["steps"]))
        )
    values = dict(dep.origin_parameters(d.flow, origin_run_id), **_given_parameters(obj, kwargs))
    tags = {ORIGIN_RUN_TAG: origin_run_id}
    if step_to_rerun:
        tags[RESUME_STEP_TAG] = step_to_rerun
    _submit(obj, d, values, tags, opts, "Resumed")


@dagster.command(help="Print the status of a run on stdout: PENDING, RUNNING, SUCCEEDED or FAILED.")
@click.argument("run-id", required=True, type=str)
@click.pass_obj
def status(obj, run_id):
    d = _deployment(obj, "status")
    with dep.instance(d.home) as inst:
        run = dep.get_run(inst, d.flow, run_id)
        reason = dep.failure_reason(inst, run.run_id)
    url = dep.find_webserver(d.home)
    obj.echo("Run *%s/%s* is %s on Dagster: %s" % (d.flow["name"], run_id, run.status.value,
                                                   dep.run_url(run.run_id, url)))
    if reason:
        obj.echo(reason)
    click.echo(dep.STATUS.get(run.status.value, "PENDING"))


@dagster.command(help="Terminate a run of the deployed flow.")
@click.argument("run-id", required=True, type=str)
@click.pass_obj
def terminate(obj, run_id):
    d = _deployment(obj, "terminate")
    pathspec = "%s/%s" % (d.flow["name"], run_id)
    with dep.instance(d.home) as inst:
        run = dep.get_run(inst, d.flow, run_id)
        if not dep.terminate(inst, run):
            raise DagsterException("run *%s* cannot be terminated: it is %s" % (pathspec, run.status.value))
    obj.echo("Terminating run *%s* (Dagster run %s)." % (pathspec, run.run_id), bold=True)


@dagster.command(help="Remove the deployment; its definitions file and past runs stay.")
@click.pass_obj
def delete(obj):
    d = _deployment(obj, "delete")
    jobs = dep.Workspace.jobs_of(d.defs)
    dep.Workspace(d.home).unregister(d.deployment)
    obj.echo("Deleted deployment *%s* (its definitions file %s is left in place)." % (d.name, d.defs))
    if len(jobs) > 1:
        obj.echo("The jobs %s of the same file went with it: they are one deployment, *%s*."
                 % (", ".join("*%s*" % j for j in jobs if j != d.name), d.deployment))
    url = dep.find_webserver(d.home)
    if url is not None:
        dep.reload_location(url)
        obj.echo("The Dagster webserver at %s no longer serves it." % url)


@dagster.command(name="list", help="Print `name flow file` of this flow's deployments (of all with --all).")
@click.option("--all", "all_flows", is_flag=True, default=False, help="List the deployments of every flow.")
@click.pass_obj
def list_deployments(obj, all_flows=False):
    """One line per job: `job flow file`, followed by `(broken: reason)` for a deployment that does not load as
    the code server loads it (checked in a fresh process, as a code server does)."""
    home = dep.require_home(what="`dagster list`")
    workspace = dep.Workspace(home)
    proc = subprocess.run([sys.executable, "-m", "metaflow_dagster.location", "status", workspace.dir],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    try:
        status = json.loads(proc.stdout)
    except ValueError:
        raise DagsterException("cannot check the deployments of %s: %s" % (home, proc.stderr.strip()[-2000:])) from None
    for name, state in status.items():
        flows = state.get("flows") or {}
        for job in state.get("jobs") or [name]:
            flow = flows.get(job, "?")
            if all_flows or flow == obj.flow.name:
                line = "%s %s %s" % (job, flow, state.get("definitions"))
                click.echo(line if state["ok"] else "%s (broken: %s)" % (line, state["error"]))
