"""The ops of a generated job: ``FlowRuntime`` runs the Metaflow tasks of one flow.

``FLOW`` (the generated file's literal, docs/codegen.md) says everything the compiler decided; the runtime
reads it and never decides a name itself. The switch choice and foreach cardinality are read back from
Metaflow's datastore at the latest attempt, never from local files.
"""

import json
import os
import threading
import time

from dagster import DynamicOutput, Failure, Field, Int, MetadataValue, Output

from .commands import TaskCommands
from .contract import (
    _DEFINITIONS_DIGEST,
    DEPLOYMENT_TAG,
    JOB_FLOW_TAG,
    ORIGIN_RUN_TAG,
    PARAMETERS_ENV,
    PARAMS_TASK_ID,
    RESUME_STEP_TAG,
    ROOT_RUN_ID_TAG,
    RUN_ID_TAG,
    TRIGGER_ENV,
    TRIGGERS_TAG,
    emitted_events,
    emitted_payload,
    flatten_tokens,
    mapping_key,
    metaflow_run_id,
    param_env_value,
    task_id_for,
)
from .executor import _OP_THREAD, make_executor
from .package import CodePackage
from .processes import TaskProcesses
from .sensors import _event_sensor, _finish_sensor, event_assets, publish_event
from .tasks import _flow_datastore, _input_paths, _worker_name
from .tokens import token_io_manager


def _warm_runless_events(instance):
    """Read the instance's run-less events (the storage the events a task publishes go to) while the task
    runs: the first access of a process prepares that storage (on SQLite, a database of its own and a schema
    check, about 50 ms), which the publish after the task then finds done. A failure here is the publish's
    to report."""
    try:
        instance.get_records_for_run("", limit=1)  # "": the run id of run-less events
    except Exception:
        pass


class FlowRuntime(CodePackage, TaskCommands, TaskProcesses):
    """Runs the Metaflow tasks of one flow for the ops of a generated job.

    ``flow`` is the ``FLOW`` literal of the generated file (see docs/codegen.md). Creating the runtime checks
    that the flow file still has the sha256 recorded at ``create``; a changed file raises
    StaleDefinitionsError so Dagster reports the location as broken instead of running edited code under an
    old plan.
    """

    def __init__(self, flow, check_stale=True):
        self.flow = flow
        self.steps = flow["steps"]
        self._root_run_ids = {}  # root Dagster run id -> its Metaflow run id (re-executions)
        package = flow.get("code_package")
        if check_stale and not package:
            self._check_stale()
        # Metaflow reads these when it is first imported. Setting them before any import (the forkserver
        # preloads Metaflow after this module loads) makes the warm workers see the deploy-time settings.
        os.environ.update(self._settings_env())
        self._package_env = {}
        if package and check_stale:
            # Tasks run the flow file of the code package, never the one `create` read: this machine may
            # not have it. Every path the runtime derives (command, working directory) follows FLOW["file"].
            self.flow = dict(flow, file=self._code_package_flow_file(package))
            # Given to this flow's tasks only (_env): in a file of several flows each has its own package.
            self._package_env = self._code_package_env(package)

    def executor(self):
        """The executor of the flow's job (executor.make_executor): ops as threads of the run worker, or Dagster's
        own multiprocess executor where the threaded one cannot run."""
        return make_executor(self)

    def resources(self):
        """The resources of a job whose ops share no disk with the run worker (Celery, Kubernetes, Docker: the
        core adds them to such a job): the ``io_manager`` that keeps op outputs in the flow's Metaflow datastore
        (tokens.TokenStore), where every worker reads them."""
        return {"io_manager": token_io_manager(self.flow)}

    def _remote_ops(self):
        """Whether ops run in processes of their own elsewhere (Celery, Kubernetes, Docker), where a step may be
        delivered again after its worker died."""
        return (self.flow.get("executor") or {}).get("kind") in ("celery", "k8s", "docker")

    def param_schema(self):
        """Dagster config schema of the start op: one launchpad field per Metaflow Parameter, as the compiler
        decided it (FLOW["config_schema"]: the Dagster type's name and the Field's keywords)."""
        from dagster import Bool, Float, String

        types = {"String": String, "Int": Int, "Float": Float, "Bool": Bool}
        return {name: Field(types[f["type"]], **{k: v for k, v in f.items() if k != "type"})
                for name, f in self.flow["config_schema"].items()}

    def event_sensor(self, job):
        """The sensor that runs ``job`` for the flow's ``@trigger`` events (see EventSensorLogic)."""
        return _event_sensor(self, job)

    def finish_sensor(self, job):
        """The sensor that runs ``job`` once per successful run of the ``@trigger_on_finish`` flows."""
        return _finish_sensor(self, job)

    def event_assets(self):
        """An AssetSpec per event the flow listens to, so the UI shows event -> job."""
        return event_assets(self)

    def run_id(self, context):
        """The Metaflow run id of this Dagster run: the ``metaflow/run_id`` tag, else derived from the run id;
        for a re-execution, the Metaflow run of its root run (see metaflow_run_id)."""
        tags = context.run.tags
        root = context.run.root_run_id or tags.get(ROOT_RUN_ID_TAG)
        if tags.get(RUN_ID_TAG) or not root:
            return metaflow_run_id(context.run_id, tags)
        if root not in self._root_run_ids:  # a re-execution launched without its root's tags: read them
            record = context.instance.get_run_by_id(root)
            self._root_run_ids[root] = metaflow_run_id(root, record.tags if record is not None else None)
        return self._root_run_ids[root]

    def job_tags(self):
        """Tags of the flow's job: the flow, and the digest of the definitions file (``metaflow/deployment``),
        which tells `create` and `trigger` what a running Dagster serves. Runs carry them too."""
        return {JOB_FLOW_TAG: self.flow["name"], DEPLOYMENT_TAG: _DEFINITIONS_DIGEST}

    def _task_datastore(self, pathspec, allow_not_done=False):
        run_id, step, task_id = pathspec.split("/")
        return _flow_datastore(self.flow).get_task_datastore(
            run_id, step, task_id, attempt=None, mode="r", allow_not_done=allow_not_done)

    def _metadata(self, pathspec, names):
        snippet = "from metaflow import Task\ntask = Task(%r)\n%s" % (
            "%s/%s" % (self.flow["name"], pathspec),
            "\n".join("task.data.%s" % n for n in names) or "task.data",
        )
        return {
            "metaflow_pathspec": MetadataValue.text("%s/%s" % (self.flow["name"], pathspec)),
            "artifacts": MetadataValue.text(", ".join(names)),
            "retrieve": MetadataValue.md("```python\n%s\n```" % snippet),
        }

    def _time_limit(self, context, step_timeout):
        """Seconds this task may run: its @timeout, capped by what is left of ``--workflow-timeout``.

        The run's budget counts from the run's start as Dagster recorded it; when it is spent the task does
        not start and the op fails without retries.
        """
        budget = self.flow["options"]["workflow_timeout"]
        if not budget:
            return step_timeout
        record = context.instance.get_run_record_by_id(context.run_id)
        started = (record and record.start_time) or time.time()
        left = int(budget - (time.time() - started))
        if left <= 0:
            raise Failure(
                description="run exceeded the workflow timeout of %d seconds" % budget,
                metadata={"workflow_timeout": budget},
                allow_retries=False,
            )
        return min(step_timeout, left) if step_timeout else left

    def _parents(self, step, inputs):
        wanted = set(self.steps[step]["in"])
        return [t for t in flatten_tokens(inputs) if t["step"] in wanted]

    def _rerun_steps(self, resume_step):
        """``resume_step`` and every step reachable from it: what a resume from that step runs again."""
        children = {}
        for name, spec in self.steps.items():
            for parent in spec["in"]:
                children.setdefault(parent, []).append(name)
        seen, todo = set(), [resume_step]
        while todo:
            step = todo.pop()
            if step not in seen:
                seen.add(step)
                todo.extend(children.get(step, []))
        return seen

    def _clone_origin(self, context, step, task_id):
        """The origin task to clone for this task of a resume run, or None to run it.

        A task is cloned when the origin run has the same task (task ids are deterministic) finished
        successfully, unless the step is the resume step or comes after it.
        """
        origin = context.run.tags.get(ORIGIN_RUN_TAG)
        if not origin:
            return None
        resume_step = context.run.tags.get(RESUME_STEP_TAG)
        if resume_step and step in self._rerun_steps(resume_step):
            return None
        pathspec = "%s/%s/%s" % (origin, step, task_id)
        try:
            ok = self._task_datastore(pathspec)["_task_ok"]
        except Exception:
            return None
        return pathspec if ok else None

    def _init_params(self, context, run_id):
        """Run Metaflow's ``init`` once per run (not again when the run has it, e.g. on a retry of the start
        op): it records the Parameters as the ``_parameters`` task."""
        pathspec = "%s/_parameters/%s" % (run_id, PARAMS_TASK_ID)
        cfg = context.op_config or {}
        extra = {}
        for p in self.flow["parameters"]:
            if cfg.get(p["name"]) is not None:
                env_name = "METAFLOW_INIT_" + p["name"].upper().replace("-", "_")
                extra[env_name] = param_env_value(p["type"], cfg[p["name"]])
        argv = self._command("init", "--run-id", run_id, "--task-id", PARAMS_TASK_ID)
        for tag in self.flow["options"]["tags"]:
            argv += ["--tag", tag]
        what = "Metaflow init of run %s" % run_id
        report = {"pathspec": pathspec, "keys": [], "reuse": True}
        self._spawn(context, argv, self._env(extra=extra), 0, what, fork=self._can_fork(None), report=report)
        return pathspec

    def _triggers(self, context):
        """The events that started this run, as Metaflow's Trigger API describes them, or []."""
        return json.loads(context.run.tags.get(TRIGGERS_TAG) or "[]")

    def _register_triggers(self, pathspec, triggers):
        """Record ``execution-triggers`` on the start task: what ``Run(...).trigger`` reads."""
        from types import SimpleNamespace

        from metaflow.metadata_provider import MetaDatum
        from metaflow.metaflow_environment import MetaflowEnvironment
        from metaflow.plugins import METADATA_PROVIDERS

        flow = SimpleNamespace(name=self.flow["name"])
        impl = next(m for m in METADATA_PROVIDERS if m.TYPE == self.flow["settings"]["metadata"])
        provider = impl(MetaflowEnvironment(flow), flow, None, None)
        run_id, step, task_id = pathspec.split("/")
        datum = MetaDatum(field="execution-triggers", value=json.dumps(triggers), type="execution-triggers", tags=[])
        provider.register_metadata(run_id, step, task_id, [datum])

    def _emit_events(self, context, step, pathspec):
        """Publish the events a successful task of ``step`` emits (the flow-finished event on the end step)."""
        full = "%s/%s" % (self.flow["name"], pathspec)
        for name in emitted_events(self.flow, step):
            publish_event(context.instance, name, emitted_payload(self.flow, full, time.time()))
            context.log.info("published event %s (id %s)" % (name, full))

    def _run_task(self, context, step, parents, iteration=0, prev=None, keys=()):
        """Run Metaflow task ``step`` for ``parents`` (live tokens). Returns (token, values, metadata): values
        are the task's artifacts named in ``keys``."""
        spec = self.steps[step]
        run_id = self.run_id(context)
        idx, input_paths, split = self._task_inputs(context, run_id, step, parents, prev)
        task_id = task_id_for(idx, iteration)
        pathspec = "%s/%s/%s" % (run_id, step, task_id)
        attempt, max_user_retries = self._attempt(context, pathspec, spec["user_retries"])
        argv = self._command(
            "step", step,
            "--run-id", run_id,
            "--task-id", task_id,
            "--retry-count", str(attempt),
            "--max-user-code-retries", str(max_user_retries),
        )
        origin = self._clone_origin(context, step, task_id)
        if origin:
            argv += ["--clone-only", origin]
        else:
            argv += ["--input-paths", _input_paths(input_paths)]
            if split is not None:
                argv += ["--split-index", str(split)]
        for tag in self.flow["options"]["tags"]:
            argv += ["--tag", tag]
        if self.flow["options"]["namespace"] is not None:  # the namespace of client calls in the task
            argv.append("--namespace=%s" % self.flow["options"]["namespace"])
        what = "Metaflow step '%s' (task %s/%s, attempt %d%s)" % (
            step, self.flow["name"], pathspec, attempt, ", cloned from %s" % origin if origin else ""
        )
        context.log.info("running %s" % what)
        triggers = self._triggers(context)
        extra = {TRIGGER_ENV: json.dumps(triggers)} if triggers else {}
        if not origin and context.run.tags.get(ORIGIN_RUN_TAG) and step != self.flow["start_step"]:
            # A task of a resume that runs again sees the resumed run's Parameters, not its parent's (a
            # clone keeps the origin's): _take_run_parameters.
            extra[PARAMETERS_ENV] = "%s/_parameters/%s" % (run_id, PARAMS_TASK_ID)
        env = self._env(step, extra)
        report = {"pathspec": pathspec, "keys": list(keys), "attempt": attempt}
        worker = _worker_name()
        # Clones keep their origin's logs; the others are saved with the worker that ran them.
        logs = None if origin else {"pathspec": pathspec, "attempt": attempt, "worker": worker}
        warm = None
        if emitted_events(self.flow, step) and getattr(_OP_THREAD, "launcher", None) is not None:
            warm = threading.Thread(target=_warm_runless_events, args=(context.instance,), daemon=True)
            warm.start()
        try:
            info = self._spawn(context, argv, env, self._time_limit(context, spec["timeout"]), what,
                               fork=self._can_fork(step), report=report, logs=logs)
        finally:
            if warm is not None:
                warm.join()
        if triggers and step == self.flow["start_step"] and not origin:
            self._register_triggers(pathspec, triggers)
        self._emit_events(context, step, pathspec)
        token = {"step": step, "task": pathspec, "idx": idx, "split": None, "dead": False}
        return token, info["values"], dict(self._metadata(pathspec, info["names"]), worker=worker)

    def _task_inputs(self, context, run_id, step, parents, prev):
        """(foreach index stack, input paths, split index or None) of a task of ``step``: the start step reads
        the run's parameters (running ``init`` first), a recursive switch's repeat its previous iteration
        (``prev``), any other step its parents' tasks."""
        if prev is not None:
            return prev["idx"], [prev["task"]], None
        if step == self.flow["start_step"]:
            return [], [self._init_params(context, run_id)], None
        idx = list(parents[0]["idx"])
        if self.steps[step]["foreach_join"]:
            idx = idx[:-1]
        ordered = sorted(parents, key=lambda t: (t["idx"], t["step"]))
        return idx, list(dict.fromkeys(t["task"] for t in ordered)), parents[0].get("split")

    def _attempt(self, context, pathspec, user_retries):
        """``(--retry-count, --max-user-code-retries)`` of this attempt of task ``pathspec``.

        Within one Dagster run the attempt is Dagster's retry number. A re-execution (the UI's "Re-execute")
        continues the Metaflow run of its group, so its attempts go on after those the task already made
        there, as @retry's would, and ``@retry``/``@catch`` count from the re-execution's first attempt. So do
        the attempts of a step on Celery, Kubernetes or Docker, which its executor may deliver again when the
        worker that ran it died: the attempt the dead worker started keeps its number. The task's attempts so
        far are read from Metaflow's datastore (only for re-executions and those executors).
        """
        retry = context.retry_number
        if not (context.run.root_run_id or context.run.tags.get(ROOT_RUN_ID_TAG) or self._remote_ops()):
            return retry, user_retries
        from metaflow.metaflow_config import MAX_ATTEMPTS

        base = max(0, self._next_attempt(pathspec) - retry)
        if base + retry >= MAX_ATTEMPTS:
            raise Failure(
                description="task %s/%s has had %d attempts, all that Metaflow allows (MAX_ATTEMPTS): re-execute "
                "no more, resume the run instead (python <flow file> dagster resume --origin-run-id %s)"
                % (self.flow["name"], pathspec, MAX_ATTEMPTS, pathspec.split("/")[0]),
                allow_retries=False,
            )
        return base + retry, base + user_retries

    def _next_attempt(self, pathspec):
        """The number of the attempt after the last one task ``pathspec`` started (0 when none did)."""
        try:
            ds = self._task_datastore(pathspec, allow_not_done=True)
        except Exception:  # no attempt at all
            return 0
        return 0 if ds.attempt is None else ds.attempt + 1

    def _dead(self, step, parents):
        idx = list(parents[0]["idx"]) if parents else []
        if parents and self.steps[step]["foreach_join"]:
            idx = idx[:-1]
        return {"step": step, "task": None, "idx": idx, "split": None, "dead": True}

    def run(self, context, step, inputs):
        """Op body of a linear, join, split or end step. Returns the op's Output."""
        parents = self._parents(step, inputs)
        live = [t for t in parents if not t["dead"]]
        if parents and not live:
            context.log.info("step '%s': switch case not taken in this foreach item; nothing to run" % step)
            return Output(self._dead(step, parents))
        token, _, md = self._run_task(context, step, live)
        return Output(token, metadata=md)

    def fan_out(self, context, step, inputs):
        """Op body of a top-level foreach step: run it, then yield one DynamicOutput per split."""
        token, values, md = self._run_task(context, step, self._parents(step, inputs), keys=["_foreach_num_splits"])
        n = self._num_splits(step, token, values)
        for i in range(n):
            child = dict(token, idx=token["idx"] + [i], split=i)
            yield DynamicOutput(
                child, mapping_key=mapping_key(child["idx"]), metadata=dict(md, splits=n) if i == 0 else None
            )

    def foreach(self, context, step, inputs):
        """Op body of a foreach step inside a foreach body: run it; a barrier op fans out its splits later."""
        parents = self._parents(step, inputs)
        live = [t for t in parents if not t["dead"]]
        if parents and not live:
            return Output(dict(self._dead(step, parents), splits=0))
        token, values, md = self._run_task(context, step, live, keys=["_foreach_num_splits"])
        n = self._num_splits(step, token, values)
        return Output(dict(token, splits=n), metadata=dict(md, splits=n))

    def _num_splits(self, step, token, values):
        """The number of splits a foreach task yielded; fails the op, as Metaflow's runtime fails the run, when
        it is more than ``create --max-num-splits`` (Metaflow's default, 100, unless given)."""
        n = values["_foreach_num_splits"]
        limit = self.flow["options"].get("max_num_splits", 100)
        if n > limit:
            raise Failure(
                description="Foreach in step %s (task %s/%s) yielded %d child steps which is more than the current "
                "maximum of %d children. You can raise the maximum with the --max-num-splits option of "
                "`dagster create`." % (step, self.flow["name"], token["task"], n, limit),
                metadata={"splits": n, "max_num_splits": limit},
                allow_retries=False,
            )
        return n

    def switch(self, context, step, inputs, targets, optional):
        """Op body of a split-switch step: yield an Output named after the chosen target step.

        A recursive switch (a case naming the step itself) runs the step again, as a new task, until the
        condition picks another case. With ``optional`` (top level) only the chosen output is yielded and
        Dagster skips the other branches; inside a foreach body every output is yielded and the ones not
        chosen carry a dead token.
        """
        parents = self._parents(step, inputs)
        live = [t for t in parents if not t["dead"]]
        if parents and not live:
            dead = self._dead(step, parents)
            for target in targets:
                yield Output(dead, target)
            return
        token, values, md = self._run_task(context, step, live, keys=["_transition"])
        iteration = 0
        chosen = values["_transition"][0][0]
        while chosen == step:
            iteration += 1
            token, values, md = self._run_task(
                context, step, live, iteration=iteration, prev=token, keys=["_transition"]
            )
            chosen = values["_transition"][0][0]
        context.log.info("step '%s' chose '%s'" % (step, chosen))
        for target in targets:
            if target == chosen:
                yield Output(token, target, metadata=dict(md, chosen=chosen))
            elif not optional:
                yield Output(self._dead(step, [token]), target)

    def expand(self, context, step, inputs):
        """Barrier op entering a nested foreach: fan out the splits of every ``step`` token collected.

        A dead foreach token still yields one dead token, so every enclosing item keeps a representative
        and the matching ``regroup`` can hand its join a dead token.
        """
        for t in sorted((t for t in flatten_tokens(inputs) if t["step"] == step), key=lambda t: t["idx"]):
            if t["dead"]:
                yield DynamicOutput(dict(t, idx=t["idx"] + [0]), mapping_key=mapping_key(t["idx"] + [0]))
                continue
            for i in range(t["splits"]):
                child = dict(t, idx=t["idx"] + [i], split=i)
                child.pop("splits", None)
                yield DynamicOutput(child, mapping_key=mapping_key(child["idx"]))

    def regroup(self, context, depth, inputs):
        """Barrier op leaving a nested foreach: re-key every collected token by its first ``depth`` indices.

        Yields one bundle (list of tokens) per foreach item at ``depth``; the ops after the barrier pick
        their predecessors out of it.
        """
        groups = {}
        for t in flatten_tokens(inputs):
            groups.setdefault(tuple(t["idx"][:depth]), []).append(t)
        for key in sorted(groups):
            yield DynamicOutput(groups[key], mapping_key=mapping_key(list(key)))
