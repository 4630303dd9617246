"""Runtime of a generated metaflow-dagster definitions file.

The compiler pastes this module verbatim into every file it writes, its imports at the top of the file and the
rest after the ``FLOW`` literal, so the file needs only ``dagster``, ``metaflow`` and the standard library where
it runs. It is also an ordinary module (``metaflow_dagster.runtime``) so it can be linted and unit-tested on its
own. Every name it uses that the compiler decides (sensor names, the events tasks publish, the config schema of
the start op, reset_at's cron) it reads from ``FLOW``.

Model. Every Metaflow task is run by one Dagster op. Ops pass *tokens* to each other: small dicts that name
the Metaflow task an op produced::

    {"step": "a", "task": "dagster-1f2e/a/t-3", "idx": [3], "split": None, "dead": False}

``idx`` is the foreach index stack of the task (outermost first) and determines its task id (``t`` at top
level, ``t-3-1`` two foreach levels deep). ``split`` is set on the tokens a foreach op fans out: the child
takes it as ``--split-index``. A *dead* token marks a switch case that was not taken inside a foreach body,
where Dagster cannot skip ops (fan-in is not allowed downstream of a dynamic output): ops handed only dead
tokens pass a dead token on without running anything. Op inputs may be a token, a list of tokens (a
collect or a fan-in) or a bundle (the list of tokens a barrier op re-keys); the runtime flattens them and
keeps the tokens of the step's own predecessors.

Invariants: run ids and task ids are never integers (Metaflow's metadata skips those); the switch choice
and foreach cardinality are read back from Metaflow's datastore at the latest attempt, never from local
files; the environment of a task is built from an allowlist, never copied whole.
"""

import collections
import datetime
import functools
import gc
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from contextlib import ExitStack, contextmanager

from dagster import (
    DagsterExecutionInterruptedError,
    DynamicOutput,
    Executor,
    Failure,
    Field,
    Int,
    MetadataValue,
    Output,
    executor,
)

RUN_ID_TAG = "metaflow/run_id"
ROOT_RUN_ID_TAG = "dagster/root_run_id"  # set by Dagster on every re-execution of a run
DEPLOYMENT_TAG = "metaflow/deployment"  # job tag: the sha256 of the definitions file that defines the job
JOB_FLOW_TAG = "metaflow/flow"
TRIGGER_ENV = "METAFLOW_DAGSTER_TRIGGERS"
PARAMETERS_ENV = "METAFLOW_DAGSTER_RUN_PARAMETERS"  # a re-run task of a resume: its run's _parameters task
ORIGIN_RUN_TAG = "metaflow/origin_run_id"
RESUME_STEP_TAG = "metaflow/resume_step"
PARAMS_TASK_ID = "params"
CODE_CACHE_ENV = "METAFLOW_DAGSTER_CODE_CACHE"  # where workers keep extracted code packages
_KILL_GRACE_SECONDS = 5
_ZYGOTE_MAX_REQUEST = 1 << 20


def _file_digest(path):
    """The short sha256 of the file at ``path`` ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return ""


# The runtime is pasted into the generated file, so this is the digest of the definitions file (the deployment).
_DEFINITIONS_DIGEST = _file_digest(__file__)


class StaleDefinitionsError(Exception):
    """The flow file changed after ``create``; the plan in this file no longer describes it."""


def task_id_for(idx, iteration=0):
    """Task id of the task at foreach index stack ``idx`` (and recursive-switch ``iteration``)."""
    tid = "t" + "".join("-%d" % i for i in idx)
    return tid if not iteration else "%s-r%d" % (tid, iteration)


def metaflow_run_id(dagster_run_id, tags=None, root_run_id=None):
    """The Metaflow run id of a Dagster run: its ``metaflow/run_id`` tag, else derived from the Dagster run id
    (``dagster-`` + 20 hex digits, never an integer).

    A re-execution (the UI's "Re-execute": a run with a ``root_run_id``) continues the Metaflow run of its run
    group, so its id derives from the root run's id. (A root run with a ``metaflow/run_id`` tag passes it on:
    Dagster copies a parent's tags to its re-executions; FlowRuntime.run_id reads the root's tags when a
    re-execution was launched without them.)
    """
    tags = tags or {}
    root = root_run_id or tags.get(ROOT_RUN_ID_TAG)
    return tags.get(RUN_ID_TAG) or "dagster-" + (root or dagster_run_id).replace("-", "")[:20]


def mapping_key(idx):
    """Dagster mapping key for a foreach index stack: ``3_1``; ``top`` for the empty stack."""
    return "_".join(str(i) for i in idx) or "top"


def flatten_tokens(inputs):
    """Flatten op inputs (tokens, lists of tokens, bundles, nested lists) into a list of tokens."""
    out = []
    stack = [inputs]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif item is not None:
            raise TypeError("unexpected op input %r" % (item,))
    return out


def param_env_value(ptype, value):
    """Render a parameter value as Metaflow's ``init`` reads it from ``METAFLOW_INIT_<NAME>``."""
    if ptype == "bool":
        return "true" if value else "false"
    if ptype == "json" and not isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _env_allowed(name, allowlist):
    return any(name == a or (a.endswith("*") and name.startswith(a[:-1])) for a in allowlist)


def _input_paths(paths):
    """The value of ``--input-paths``, which a task reads with Metaflow's ``decompress_list``.

    That takes a plain comma-separated list as it is; ``compress_list`` only shortens one (a common prefix,
    zlib), which a command line needs when a join has thousands of inputs. Up to 64 KiB the list goes plain
    (for one path that is also what ``compress_list`` writes), and this process needs no Metaflow for it.
    """
    plain = ",".join(paths)
    if len(plain) < 65536 and all(p and not any(c in p for c in ",:!") for p in paths):
        return plain
    from metaflow.util import compress_list

    return compress_list(paths)


def _flow_datastore(flow):
    """Metaflow's FlowDataStore of ``flow`` (the FLOW literal, or just its ``name`` and ``settings``)."""
    from metaflow.datastore import FlowDataStore
    from metaflow.plugins import DATASTORES

    s = flow["settings"]
    impl = next(d for d in DATASTORES if d.TYPE == s["datastore"])
    if s["datastore"] == "local":
        os.environ.setdefault("METAFLOW_DATASTORE_SYSROOT_LOCAL", os.path.dirname(s["datastore_root"]))
    return FlowDataStore(flow["name"], storage_impl=impl, ds_root=s["datastore_root"])


def _task_info(flow, pathspec, keys=()):
    """What an op needs of a finished task: ``{"names": [artifact names], "values": {key: artifact}}`` for
    ``keys`` (``_foreach_num_splits``, ``_transition``), read through Metaflow's datastore at the task's
    latest attempt. ``flow`` needs only ``name`` and ``settings``. Raises if the task has no finished attempt.
    """
    run_id, step, task_id = pathspec.split("/")
    ds = _flow_datastore(flow).get_task_datastore(run_id, step, task_id, attempt=None, mode="r")
    return {"names": sorted(k for k, _ in ds.items() if not k.startswith("_")), "values": {k: ds[k] for k in keys}}


def _take_run_parameters(pathspec):
    """Make the Metaflow task this process runs read its Parameters from task ``pathspec`` (``run/_parameters/
    params``, its own run's Parameters), instead of from its first input task.

    Metaflow gives a task the Parameter values of its first input (``MetaflowTask._init_parameters``: the
    start task takes them from ``_parameters``, every later task from its parent) and passes them on with the
    other artifacts. In a resume run given new Parameter values the parent may be a clone of an origin task,
    which keeps the origin's values, so a task that runs again would see the old ones. Here the first input's
    Parameter artifacts are pointed (in this process's view of it only: the input is read-only and nothing
    of it is written) at those of ``pathspec``, before Metaflow reads them: the step sees the run's values
    and the task records them as its own artifacts, as a task of a fresh run does. Config values are left
    alone (they are the deployment's, the same in every run). Raises RuntimeError, failing the task, if this
    Metaflow has no such hook.
    """
    from metaflow.task import MetaflowTask

    original = getattr(MetaflowTask, "_init_parameters", None)
    if original is None:
        raise RuntimeError(
            "this Metaflow has no MetaflowTask._init_parameters, so a task of a resumed run cannot be given the "
            "run's Parameters (%s)" % pathspec
        )

    def _init_parameters(self, parameter_ds, passdown=True):
        run_id, step, task_id = pathspec.split("/")
        given = self.flow_datastore.get_task_datastore(run_id, step, task_id, mode="r")
        for var, param in self.flow._get_parameters():
            if not param.IS_CONFIG_PARAMETER and var in given:
                # What TaskDataStore.passdown_partial copies: the artifact's content key and its info.
                parameter_ds._objects[var] = given._objects[var]
                parameter_ds._info[var] = given._info[var]
        return original(self, parameter_ds, passdown)

    MetaflowTask._init_parameters = _init_parameters


def _exec_as_main(path):
    """Execute the file at ``path`` as the real ``__main__`` module, as ``python path`` does, after setting up
    what the task's environment asks for (``current.trigger``, the run's Parameters in a resume).

    Not ``runpy.run_path``: that swaps in a temporary ``__main__``, and Metaflow pickles classes it
    registers on the real one (``ForeachFrame``), which must stay resolvable.
    """
    from metaflow import tuple_util

    import __main__

    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    namespace = __main__.__dict__
    namespace.update(__name__="__main__", __file__=path, ForeachFrame=tuple_util.ForeachFrame)
    triggers = os.environ.get(TRIGGER_ENV)
    if triggers:
        from metaflow import current
        from metaflow.events import Trigger

        current._update_env({"trigger": Trigger(json.loads(triggers))})
    if os.environ.get(PARAMETERS_ENV):
        _take_run_parameters(os.environ[PARAMETERS_ENV])
    exec(code, namespace)


def _boot_argv(argv):
    """``argv`` (``[python, flow file, args...]``) as a new interpreter runs it when the task needs
    _exec_as_main's set-up: ``python -c BOOT flow file args...``, where BOOT is the source of _exec_as_main
    and _take_run_parameters (this module is not importable where tasks run: it lives in the definitions
    file) run in a namespace of their own, so the flow file still runs as the real ``__main__``, with
    ``sys.argv`` and ``sys.path[0]`` as ``python flow file`` gives them."""
    import inspect

    source = "\n".join([
        "import json, os, sys",
        "TRIGGER_ENV, PARAMETERS_ENV = %r, %r" % (TRIGGER_ENV, PARAMETERS_ENV),
        inspect.getsource(_take_run_parameters),
        inspect.getsource(_exec_as_main),
        "sys.argv = sys.argv[1:]",
        "sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))",
        "_exec_as_main(sys.argv[0])",
    ])
    boot = "exec(compile(%r, '<metaflow-dagster task>', 'exec'), {'__name__': 'metaflow_dagster_task'})" % source
    return [argv[0], "-c", boot] + list(argv[1:])


def _task_child(argv, env, cwd, out_w, err_w, report=None):  # pragma: no cover - runs in a forked child
    """Body of a forked task process: become ``python <argv>`` in a new session, then exit with its status.

    The child starts a new session (so a timeout kills its whole process group), takes ``env`` as its whole
    environment, points fds 1 and 2 at ``out_w`` and ``err_w``, and runs the flow file as ``__main__``;
    Metaflow's CLI then behaves as under ``python flow.py ...``. It never returns: it leaves with
    ``os._exit`` and the CLI's exit status.

    ``report`` (optional) is ``(fd, spec)``: after a successful run the child writes the JSON ``_task_info``
    of ``spec["pathspec"]`` to ``fd``, so the run worker needs no Metaflow of its own to read the task back;
    after a failed one, ``{"exception": ...}`` (see _task_exception) when the task recorded one. With
    ``spec["reuse"]`` a task that already finished is not run again; its info is reported.
    """
    code = 1
    info = None
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in {devnull, out_w, err_w} - {0, 1, 2}:
            os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        if cwd:
            os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = list(argv)
        sys.path[0:0] = [os.path.dirname(os.path.abspath(argv[0]))]
        if report is not None and report[1].get("reuse"):
            info = _report_info(report[1])
        if info is None:
            _exec_as_main(argv[0])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            if report is not None:
                if code == 0:
                    info = info or _report_info(report[1])
                elif "attempt" in report[1]:
                    info = {"exception": _task_exception(report[1])}
                if info is not None:  # else the run worker reads the datastore itself
                    with open(report[0], "wb", closefd=False) as f:
                        f.write(json.dumps(info, default=str).encode())
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _task_exception(spec):
    """The exception a failed attempt recorded (Metaflow's ``_exception`` artifact, what ``Task.exception``
    reads): ``{"type", "message", "traceback"}``, or None when the attempt recorded none (it failed before
    or after the step function, or was killed)."""
    try:
        run_id, step, task_id = spec["pathspec"].split("/")
        ds = _flow_datastore(spec["flow"]).get_task_datastore(
            run_id, step, task_id, attempt=spec["attempt"], mode="r", allow_not_done=True)
        wrapped = ds["_exception"]
    except Exception:
        return None
    if wrapped is None:
        return None
    return {"type": getattr(wrapped, "type", None), "message": getattr(wrapped, "exception", None),
            "traceback": getattr(wrapped, "stacktrace", None)}


def _save_task_logs(spec):
    """Save what a task printed (files of mflog lines) with the task, as Metaflow's own runtime does, so
    ``Task.stdout``/``.stderr``, ``python flow.py logs`` and the Metaflow UI show it. Needs Metaflow: runs in a
    child of the zygote, or in this process when tasks run without one."""
    from pathlib import Path

    from metaflow.mflog import RUNTIME_LOG_SOURCE

    run_id, step, task_id = spec["pathspec"].split("/")
    ds = _flow_datastore(spec["flow"]).get_task_datastore(run_id, step, task_id, attempt=spec["attempt"], mode="w")
    ds.save_logs(RUNTIME_LOG_SOURCE, {name: Path(spec[name]) for name in ("stdout", "stderr")})


def _saver_child(spec, out_w, err_w):  # pragma: no cover - runs in a forked child of the zygote
    """Body of a zygote child that saves a task's logs (_save_task_logs) and exits 0, or 1 with the reason
    on its stderr."""
    code = 1
    try:
        os.dup2(err_w, 2)
        for fd in {out_w, err_w} - {2}:
            os.close(fd)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        _save_task_logs(spec)
        code = 0
    except BaseException as e:
        print("cannot save the logs of %s: %s" % (spec.get("pathspec"), e), file=sys.stderr)
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def _report_info(spec):  # pragma: no cover - runs in a forked child
    """``_task_info`` for a task's report, or None if the datastore has no finished task (or cannot say)."""
    try:
        return _task_info(spec["flow"], spec["pathspec"], spec["keys"])
    except Exception:
        return None


class _ForkedTask:
    """A child of this process running ``python <argv>`` in place (see _task_child): the Popen surface
    ``_spawn`` uses. Only for a process that runs no other threads; the executor's threads use _Zygote."""

    def __init__(self, argv, env, cwd):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            os.close(out_r)
            os.close(err_r)
            _task_child(argv, env, cwd, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)
        self.returncode = None

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("forked task %d" % self.pid, timeout)
            else:
                time.sleep(0.05)
        return self.returncode


# ----- executor: ops as threads of the run worker, tasks forked from a zygote ----------------------------

EXECUTOR_ENV = "METAFLOW_DAGSTER_EXECUTOR"

# What _OpThreadExecutor uses of Dagster beyond its public API, as (module, name, attributes or
# constructor keywords it relies on). Read from Dagster 1.13; checked when a job is defined.
_DAGSTER_INTERNALS = (
    ("dagster._core.events", "DagsterEvent", ("engine_event", "capture_logs")),
    ("dagster._core.events", "EngineEventData", ("in_process", "interrupted")),
    ("dagster._core.execution.api", "ExecuteRunWithPlanIterable", ()),
    ("dagster._core.execution.context_creation_job", "PlanExecutionContextManager",
     ("job", "retry_mode", "execution_plan", "run_config", "dagster_run", "instance", "raise_on_error",
      "output_capture", "step_dependency_config")),
    ("dagster._core.execution.compute_logs", "create_compute_log_file_key", ()),
    ("dagster._core.execution.plan.active", "ActiveExecution",
     ("retry_mode", "max_concurrent", "instance_concurrency_context", "step_dependency_config",
      "check_for_interrupts", "mark_interrupted", "get_steps_to_execute", "concurrency_event_iterator",
      "sleep_interval", "handle_event", "verify_complete", "plan_events_iterator", "get_known_state",
      "is_complete")),
    ("dagster._core.execution.plan.instance_concurrency_context", "InstanceConcurrencyContext", ()),
    ("dagster._core.execution.plan.execute_plan", "_trigger_hook", ()),
    ("dagster._core.execution.plan.execute_plan", "dagster_event_sequence_for_step", ()),
    ("dagster._core.execution.retries", "RetryMode", ("from_config",)),
    ("dagster._core.execution.retries", "get_retries_config", ()),
    ("dagster._core.storage.compute_log_manager", "CapturedLogContext", ()),
    ("dagster._core.storage.compute_log_manager", "ComputeIOType", ("STDOUT", "STDERR")),
    ("dagster._core.storage.local_compute_log_manager", "LocalComputeLogManager",
     ("open_log_stream", "complete_artifact_path", "capture_logs", "build_log_key_for_run")),
    ("dagster._utils.error", "serializable_error_info_from_exc_info", ()),
    ("dagster._core.executor.base", "Executor", ("step_dependency_config",)),
)


@functools.lru_cache(maxsize=None)  # once per process, not once per job of a file of several flows
def _threaded_executor_problem(internals=_DAGSTER_INTERNALS):
    """None if the installed Dagster has every one of ``internals`` (what _OpThreadExecutor uses), else what
    is missing.

    A class's constructor keywords count as its attributes. The result is the same for the whole process.
    """
    import importlib
    import inspect

    for module, name, needs in internals:
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return "Dagster %s has no %s.%s" % (dagster_version(), module, name)
        if not needs:
            continue
        keywords = set()
        if inspect.isclass(obj):
            try:
                keywords = set(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                pass
        missing = [n for n in needs if n not in keywords and not hasattr(obj, n)]
        if missing:
            return "Dagster %s's %s.%s has no %s" % (dagster_version(), module, name, ", ".join(missing))
    return None


def dagster_version():
    import dagster

    return getattr(dagster, "__version__", "?")


def _multiprocess_executor(max_workers):
    """Dagster's multiprocess executor, at most ``max_workers`` ops at a time unless the launchpad says otherwise."""
    from dagster import multiprocess_executor

    return multiprocess_executor.configured(
        lambda cfg: {"max_concurrent": cfg["max_concurrent"]},
        name="metaflow_multiprocess",
        config_schema={
            "max_concurrent": Field(
                Int, default_value=max_workers,
                description="Ops (Metaflow tasks) running at the same time (Metaflow's --max-workers).",
            )
        },
    )


# .launcher: the _Launcher of the run whose op this thread executes; .streams: the op's captured stdout/stderr
_OP_THREAD = threading.local()
_INTERRUPTS = (KeyboardInterrupt, DagsterExecutionInterruptedError)


def _zygote_warm(flow_dir):  # pragma: no cover - runs in the zygote
    """Do once, before the first fork, what every task of the run would otherwise repeat.

    Each task inherits the result: ``metaflow`` and the modules its CLI and tasks import (all but
    ``metaflow.cli`` itself, see _Zygote), imported here rather than in the run worker, which then needs
    none of it while tasks report what it reads back (_task_child). Metaflow records the flow directory's
    git state in each task's metadata (five ``git`` processes, computed once per process into
    ``metaflow_git``'s cache) and each task parses the step sources (``tokenize`` compiles its regular
    expressions once per process); together about a third of a warm task's start. The git state is read
    for the directory Metaflow asks about (the flow file's, where ``python flow.py`` runs), a moment
    earlier than the task would read it.
    """
    import io
    import tokenize

    import metaflow.cli_components.utils  # noqa: F401
    import metaflow.runtime  # noqa: F401  - what `init` runs
    import metaflow.task  # noqa: F401  - what `step` runs
    from metaflow import metaflow_git, metaflow_version

    metaflow_git.get_repository_info(flow_dir)
    metaflow_version.get_version()
    for _ in tokenize.generate_tokens(io.StringIO("def f(self):\n    return 'x'\n").readline):
        pass


def _zygote_serve(sock, flow_dir):  # pragma: no cover - runs in the zygote
    """Main loop of the zygote (see _Zygote): fork a task per request, report its pid and wait status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the run worker's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # New stdio objects: another thread of the run worker may have held the old ones' locks at the fork.
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    _zygote_warm(flow_dir)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so SIGCHLD writes to wake_w
    status_fds = {}  # pid of a running task -> write end of its status pipe
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == wake_r:
                os.read(wake_r, 4096)
                while status_fds:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if not pid:
                        break
                    fd = status_fds.pop(pid, None)
                    if fd is not None:
                        _write_quietly(fd, b"%d\n" % status)
                        os.close(fd)
                continue
            msg, fds, _, _ = socket.recv_fds(sock, _ZYGOTE_MAX_REQUEST, 4)
            if not msg:
                return
            argv, env, cwd, spec = json.loads(msg)
            out_w, err_w, status_w, *report_w = fds
            for fd in report_w:  # received descriptors are inheritable: no process the task starts gets it
                os.set_inheritable(fd, False)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                # Raw closes only: the epoll instance is shared with the zygote, unregistering would touch it.
                for fd in [sel.fileno(), sock.detach(), wake_r, wake_w, status_w, *status_fds.values()]:
                    os.close(fd)
                if spec and "save_logs" in spec:
                    _saver_child(spec["save_logs"], out_w, err_w)
                _task_child(argv, env, cwd, out_w, err_w, (report_w[0], spec) if report_w else None)
            for fd in [out_w, err_w, *report_w]:
                os.close(fd)
            _write_quietly(status_w, b"%d\n" % pid)
            status_fds[pid] = status_w


def _write_quietly(fd, data):  # pragma: no cover - runs in the zygote
    """Report to an op thread; one that has gone away (its end closed) must not end the zygote."""
    try:
        os.write(fd, data)
    except OSError:
        pass


class _Zygote:
    """A single-threaded helper process that forks the Metaflow tasks of the executor's op threads.

    fork() copies only the calling thread: a task forked straight from the run worker, whose op threads may
    hold locks at that moment (stdio buffers, logging, sqlite, imports), could wait forever on a lock that no
    thread of the child will release. The zygote is forked once per run, while the run worker has one thread
    and before any op thread starts, as early as it can: when the definitions file loads in a process started
    to run the job (_executes_job_here), else when the executor is created (before the run starts), else when
    the executor starts. It runs one thread only, imports ``metaflow`` itself (on the other core, while the
    run worker sets the run up; see _zygote_warm) and forks every task from itself: a task starts warm (no
    interpreter start, no imports of its own) and safely. Not preloaded: ``metaflow.cli``, which adds the
    options of the flow's decorators (``--branch``...) when it is imported, so it must be imported by the
    task after the flow class exists (and costs a few milliseconds).

    Protocol, over a SOCK_SEQPACKET socket pair: a request is one message, the JSON ``[argv, env, cwd, report]``,
    with three descriptors attached: the task's stdout and stderr pipes and a status pipe, and a fourth, the
    report pipe, when ``report`` (the spec of _task_child's report) is not null. The zygote forks the task
    (see _task_child), writes ``<pid>\n`` to the status pipe and, once it has reaped the task, its wait
    status ``<status>\n``, then closes the pipe. At the end of the socket (closed by the executor, or the run
    worker died) the zygote exits; tasks still running are not touched.
    """

    def __init__(self, flow_dir):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the zygote
            code = 1
            try:
                ours.close()
                _zygote_serve(theirs, flow_dir)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()

    def start(self, argv, env, cwd, report=None):
        """Fork ``python <argv>`` (as _task_child runs it, with its ``report`` spec); returns its _ZygoteTask.
        OSError: zygote gone."""
        return _ZygoteTask(self, argv, env, cwd, report)

    def send(self, payload, fds):
        with self._lock:
            socket.send_fds(self._sock, [payload], fds)

    def save_logs(self, spec, timeout=120):
        """Save a task's logs in a child of the zygote (_saver_child). Returns None, or why they were not saved."""
        child = _ZygoteTask(self, [], {}, None, {"save_logs": spec})
        err = b""
        try:
            deadline = time.monotonic() + timeout
            open_fds = [child.stdout, child.stderr, child.report]
            while open_fds:
                ready = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))[0]
                if not ready:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait(_KILL_GRACE_SECONDS)
                    return "saving took longer than %d seconds" % timeout
                for f in ready:
                    chunk = os.read(f.fileno(), 65536)
                    if not chunk:
                        open_fds.remove(f)
                    elif f is child.stderr:
                        err += chunk
            rc = child.wait(timeout)
        finally:
            for f in (child.stdout, child.stderr, child.report):
                f.close()
        return None if rc == 0 else (err.decode("utf-8", "replace").strip() or "exit code %d" % rc)

    def close(self):
        """Let the zygote exit (the tasks it started run on) and reap it."""
        self._sock.close()
        try:
            # A pidfd is readable once the zygote has exited: no polling on the run's way out.
            exited = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd on this system (or the zygote is gone): poll
            exited = None
        deadline = time.monotonic() + _KILL_GRACE_SECONDS
        try:
            while not os.waitpid(self.pid, os.WNOHANG)[0]:
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    return
                if exited is None:
                    time.sleep(0.01)
                else:
                    select.select([exited], [], [], max(0.0, deadline - time.monotonic()))
        except ChildProcessError:  # reaped by someone else
            pass
        finally:
            if exited is not None:
                os.close(exited)


class _ZygoteTask:
    """A task forked by the zygote: the Popen surface ``_spawn`` uses (pid, stdout, stderr, wait), plus
    ``report``, the read end of the task's report pipe (None without a report spec)."""

    def __init__(self, zygote, argv, env, cwd, report=None):
        pipes = [os.pipe() for _ in range(3 if report is None else 4)]  # stdout, stderr, status, report
        theirs = [w for _, w in pipes]
        try:
            zygote.send(json.dumps([list(argv), env, cwd, report]).encode(), theirs)
        except OSError:
            for r, _ in pipes:
                os.close(r)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._status = pipes[2][0]
        self._buf = b""
        self.stdout = os.fdopen(pipes[0][0], "rb", buffering=0)
        self.stderr = os.fdopen(pipes[1][0], "rb", buffering=0)
        self.report = os.fdopen(pipes[3][0], "rb", buffering=0) if report is not None else None
        self.returncode = None
        pid = self._status_line(None)
        if pid is None:
            for f in (self.stdout, self.stderr, self.report):
                if f is not None:
                    f.close()
            os.close(self._status)
            raise OSError("the zygote did not start the task")
        self.pid = int(pid)

    def _status_line(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._status], [], [], wait)[0]:
                raise subprocess.TimeoutExpired("task %d" % self.pid, timeout)
            chunk = os.read(self._status, 64)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def wait(self, timeout=None):
        if self.returncode is None:
            status = self._status_line(timeout)
            # No status: the zygote died before it could reap the task; report a failure.
            self.returncode = os.waitstatus_to_exitcode(int(status)) if status is not None else 255
            os.close(self._status)
        return self.returncode


def _warm_runless_events(instance):
    """Read the instance's run-less events (the storage the events a task publishes go to) while the task
    runs: the first access of a process prepares that storage (on SQLite, a database of its own and a schema
    check, about 50 ms), which the publish after the task then finds done. A failure here is the publish's
    to report."""
    try:
        instance.get_records_for_run("", limit=1)  # "": the run id of run-less events
    except Exception:
        pass


def _reuse_sqlite_engines(instance):
    """Make the run worker's SQLite event log reuse what Dagster rebuilds for every event (run worker only).

    Dagster's ``SqliteEventLogStorage`` creates a SQLAlchemy engine for every event it stores, so every
    INSERT is compiled again (its compiled-statement cache belongs to the engine), and Alembic re-reads
    its ~40 migration scripts at every schema check and stamp (three when a run's database is created).
    Writes of events are what serializes a run's ops: this cuts a write from ~2.5 to ~1.5 ms. Here:

    * one engine per shard, kept for the process. The pool is still NullPool (a new SQLite connection per
      write, under the storage's own lock), so what reaches the database is unchanged;
    * Alembic's ScriptDirectory read once per script location (the migration scripts of an installed
      Dagster do not change while a run executes).

    Only the exact class is changed, and only where it has what is replaced: anything else (Postgres, a
    subclass, another Dagster) is left as it is. Returns whether it changed anything.
    """
    # SQLAlchemy and Alembic are reached through Dagster's own modules: the file imports only Dagster.
    from dagster._core.storage import sql
    from dagster._core.storage.event_log.sqlite import sqlite_event_log as sqlite_log

    storage = instance.event_log_storage
    needs = ("_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard", "_connect")
    if (
        type(storage) is not sqlite_log.SqliteEventLogStorage
        or not all(hasattr(storage, n) for n in needs)
        or not all(hasattr(sqlite_log, n) for n in ("create_engine", "NullPool", "SQLITE_BUSY_TIMEOUT_SECONDS"))
        or not hasattr(getattr(sql, "ScriptDirectory", None), "from_config")
    ):
        return False
    create_engine, NullPool, ScriptDirectory = sqlite_log.create_engine, sqlite_log.NullPool, sql.ScriptDirectory
    engines = {}

    @contextmanager
    def connect(shard):  # SqliteEventLogStorage._connect, with the shard's engine kept
        with storage._db_lock:
            engine = engines.get(shard)
            if engine is None:
                engine = engines[shard] = create_engine(
                    storage.conn_string_for_shard(shard), poolclass=NullPool,
                    connect_args={"timeout": sqlite_log.SQLITE_BUSY_TIMEOUT_SECONDS},
                )
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    storage._connect = connect
    if not getattr(ScriptDirectory.from_config, "_mfd_cached", False):
        read, scripts = ScriptDirectory.from_config, {}

        def from_config(config):
            key = (config.get_main_option("script_location"), config.get_main_option("version_locations"))
            if key not in scripts:
                scripts[key] = read(config)
            return scripts[key]

        from_config._mfd_cached = True
        ScriptDirectory.from_config = from_config
    return True


def _executes_job_here(job, argv=None):
    """Whether this process was started to execute a run of ``job``: ``dagster job execute`` (with ``-j job``,
    or no ``-j``: the file's only job) or a run worker of Dagster's run launchers (``dagster api execute_run``
    or ``resume_run``, whose argument names the job). Only such a process forks the zygote when the file
    loads (FlowRuntime.executor); webservers, daemons and code servers never do.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["job", "execute"]:
        named = [b for a, b in zip(args, args[1:]) if a in ("-j", "--job")]
        named += [a.split("=", 1)[1] for a in args if a.startswith("--job=")]
        return not named or named == [job]
    if args[:2] in (["api", "execute_run"], ["api", "resume_run"]) and len(args) > 2:
        try:
            from dagster._serdes import deserialize_value

            return deserialize_value(args[2]).job_origin.job_name == job
        except Exception:  # another Dagster's arguments: fork when the executor is made, as elsewhere
            return False
    return False


class _Launcher:
    """What the op threads of one run share: the zygote (None when tasks must not fork) and a pipe that
    becomes readable when the run is interrupted, which ``_spawn`` watches beside the task's output."""

    def __init__(self, zygote):
        self.zygote = zygote
        self.cancel_fd, self._cancel_w = os.pipe()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def cancelled(self):
        return self._cancel_w is None

    def cancel(self):
        if self._cancel_w is not None:
            os.write(self._cancel_w, b"x")
            os.close(self._cancel_w)
            self._cancel_w = None

    def close(self):
        self.cancel()
        os.close(self.cancel_fd)
        if self.zygote is not None:
            self.zygote.close()


def _mflog(raw):
    """A line of task output as Metaflow's log files hold it: mflog's ``[MFLOG|0|<UTC time>Z|runtime|<id>]``
    prefix (what ``mflog.decorate`` writes for Metaflow's runtime, which timestamps a line when it reads it)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return b"[MFLOG|0|%sZ|runtime|%s]%s\n" % (stamp.encode(), str(uuid.uuid4()).encode(), raw)


class _TaskOutput:
    """What a task prints, line by line:

    * to the Dagster log, stdout at INFO and stderr at ERROR (one record per line);
    * to the op's captured stdout/stderr (``streams``: the UI's logs of the step, see _StepLogs) or, without
      them, to this process's own stdout/stderr, where Dagster's capture finds them;
    * with ``keep``, to two files of Metaflow log lines (_mflog), which _save_task_logs stores with the task.

    The last lines of stderr are kept for the failure message.
    """

    _TAIL = 200

    def __init__(self, log, streams, keep):
        self._log = {"stdout": log.info, "stderr": log.error}
        self._streams = streams or {}
        self._pending = {"stdout": b"", "stderr": b""}
        self._tail = collections.deque(maxlen=self._TAIL)
        self._dir = tempfile.mkdtemp(prefix="mfd-task-logs-") if keep else None
        self._files = {n: open(os.path.join(self._dir, n), "wb") for n in ("stdout", "stderr")} if keep else {}

    def feed(self, name, chunk):
        """A chunk of stream ``name`` ("stdout" or "stderr"); b"" at its end."""
        if chunk:
            *lines, self._pending[name] = (self._pending[name] + chunk).split(b"\n")
        else:
            lines, self._pending[name] = [self._pending[name]] if self._pending[name] else [], b""
        for raw in lines:
            self._line(name, raw)

    def _line(self, name, raw):
        kept = self._files.get(name)
        if kept is not None:
            kept.write(_mflog(raw))
        line = raw.decode("utf-8", "replace").rstrip()
        stream = self._streams.get(name)
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
        if not line:
            return
        self._log[name](line)
        if stream is None:
            print(line, file=sys.stdout if name == "stdout" else sys.stderr, flush=True)
        if name == "stderr":
            self._tail.append(line)

    def stderr_tail(self):
        return list(self._tail)

    def log_files(self):
        """{"stdout": path, "stderr": path} of the kept Metaflow log lines, written out."""
        for f in self._files.values():
            f.flush()
        return {name: f.name for name, f in self._files.items()}

    def close(self):
        for f in self._files.values():
            f.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def _exception_from_stderr(lines):
    """``{"type", "message", "traceback"}`` of the last Python traceback among ``lines`` (a task's stderr), or
    None. The exception is the first unindented line after the traceback's frames."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return None
    block = lines[starts[-1]:]
    for i, line in enumerate(block[1:], 1):
        if line and not line[0].isspace():
            kind, _, message = line.partition(": ")
            return {"type": kind, "message": message, "traceback": "\n".join(block[: i + 1])}
    return None


def _user_frame(traceback_text, flow_file):
    """``flow.py:17, in step`` for the innermost frame of ``traceback_text`` in the flow file (by file name, as
    tasks may run from a code package), or None."""
    found = None
    for line in (traceback_text or "").splitlines():
        m = _FRAME.match(line)
        if m and os.path.basename(m.group("path")) == flow_file:
            found = "%s:%s, in %s" % (flow_file, m.group("line"), m.group("func"))
    return found


def _task_failure(what, rc, exception, tail, task, flow_file):
    """The Failure of a process that exited with ``rc``. For a task (``task``: its report spec) it leads
    with the user's exception, type and message, and the flow file's frame (from the task's ``_exception``,
    else its stderr), then names the task, attempt and exit code; its metadata carries each piece."""
    exc = exception or _exception_from_stderr(tail)
    metadata = {"exit_code": rc, "stderr": MetadataValue.text("\n".join(tail[-40:]))}
    summary = "%s failed with exit code %d" % (what, rc)
    if not exc:
        last = next((line.strip() for line in reversed(tail) if line.strip()), None)
        return Failure(description=summary + (": %s" % last if last else ""), metadata=metadata)
    kind = (exc.get("type") or "Exception").replace("builtins.", "")
    head = "%s: %s" % (kind, exc.get("message") or "")
    frame = _user_frame(exc.get("traceback") or "\n".join(tail), flow_file)
    metadata.update(exception=head, traceback=MetadataValue.text(exc.get("traceback") or ""))
    if frame:
        metadata["user_frame"] = frame
    if task is not None:
        metadata.update(pathspec=task["pathspec"], attempt=task.get("attempt", 0))
    return Failure(description="%s\n  at %s\n  %s" % (head, frame or "(no frame in %s)" % flow_file, summary),
                   metadata=metadata)


class _StepLogs:
    """The captured stdout/stderr of a run's ops, the UI's logs of each step.

    With Dagster's local compute log manager (the default) each launch of an op gets files of its own, as a
    step process of Dagster's multiprocess executor does, announced by a LOGS_CAPTURED event naming that
    step; the op's tasks write their lines there (_TaskOutput). Any other manager captures as Dagster's
    in-process executor does, one capture for the whole run: it redirects the process's descriptors (which
    op threads share), so task lines go to this process's stdout/stderr for it to catch.
    """

    def __init__(self, job_context, stack):
        from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

        self._context = job_context
        self._manager = job_context.instance.compute_log_manager
        self.per_step = type(self._manager) is LocalComputeLogManager
        self._stack = stack
        self._open = {}  # launch -> ExitStack of its streams

    def _key(self):
        from dagster._core.execution.compute_logs import create_compute_log_file_key

        return self._manager.build_log_key_for_run(self._context.run_id, create_compute_log_file_key())

    def for_run(self, step_keys):
        """Events announcing the whole-run capture (managers other than the local one)."""
        from dagster._core.events import DagsterEvent

        if self.per_step:
            return
        log_key = self._key()
        log_context = self._stack.enter_context(self._manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(self._context, step_keys, log_key, log_context)

    def open(self, launch):
        """(LOGS_CAPTURED event, streams) of a launch of an op; (None, None) without per-step capture."""
        from dagster._core.events import DagsterEvent
        from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType

        if not self.per_step:
            return None, None
        log_key = self._key()
        stack = ExitStack()
        streams = {name: stack.enter_context(self._manager.open_log_stream(log_key, io))
                   for name, io in (("stdout", ComputeIOType.STDOUT), ("stderr", ComputeIOType.STDERR))}
        path = self._manager.complete_artifact_path(log_key)
        stack.callback(lambda: open(path, "a").close())  # as capture_logs does: readers know it is complete
        self._open[launch] = stack
        return DagsterEvent.capture_logs(self._context, [launch[0]], log_key, CapturedLogContext(log_key)), streams

    def close(self, launch):
        stack = self._open.pop(launch, None)
        if stack is not None:
            stack.close()

    def close_all(self):
        for launch in list(self._open):
            self.close(launch)


class _OpThreadExecutor(Executor):
    """Executes the ops of a plan as threads of the run worker, at most ``max_concurrent`` at a time.

    Dagster's multiprocess executor starts a process per op, which loads the code location, the instance
    and Dagster again (about a second of CPU each); an op of ours only waits for its Metaflow task, which
    runs in a process of its own anyway. So ops run as threads here, with Dagster's own per-step machinery
    (``dagster_event_sequence_for_step``: inputs, outputs, retries, failures, hooks), while this thread
    runs the plan with ActiveExecution and yields the events. Each task is still a child process (forked by
    the zygote, or a subprocess when it needs another interpreter), so a crashing task never takes down its
    siblings or the run worker, and a timeout still kills its process group. An interrupt (run termination)
    makes every op kill its task and fail as interrupted.
    """

    def __init__(self, runtime, retries, max_concurrent, zygote=None):
        self._runtime = runtime
        self._retries = retries
        self._max_concurrent = max_concurrent
        self._zygote = zygote  # forked when the executor was made, or None: _run_plan forks it
        self._launches = 0

    @property
    def retries(self):
        return self._retries

    def execute(self, plan_context, execution_plan):
        from dagster._core.events import DagsterEvent, EngineEventData
        from dagster._core.execution.api import ExecuteRunWithPlanIterable
        from dagster._core.execution.context_creation_job import PlanExecutionContextManager

        yield DagsterEvent.engine_event(
            plan_context,
            "Executing steps as threads of process %d, at most %d at a time"
            % (os.getpid(), self._max_concurrent),
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=self._run_plan,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        )

    def _run_plan(self, job_context, execution_plan):
        from dagster._core.execution.plan.active import ActiveExecution
        from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

        if job_context.instance.python_log_level is None and job_context.log.level == logging.NOTSET:
            # Every log record is a write to the run's event log, and those writes are what serializes the
            # ops of a run. Dagster's IO manager logs two DEBUG lines per token it stores or loads (80 of
            # the 300 records of a 20-way foreach); unless the instance sets a python_log_level, ops of
            # these jobs log from INFO up. Dagster's own events are recorded whatever the level.
            job_context.log.setLevel(logging.INFO)
        with ExitStack() as stack:
            logs = _StepLogs(job_context, stack)
            stack.callback(logs.close_all)
            yield from self._capture_run_logs(job_context, logs, execution_plan)
            concurrency = stack.enter_context(InstanceConcurrencyContext(job_context.instance, job_context.dagster_run))
            active = stack.enter_context(
                ActiveExecution(
                    execution_plan,
                    retry_mode=job_context.retry_mode,
                    max_concurrent=self._max_concurrent,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=job_context.step_dependency_config,
                )
            )
            # Forked while this is the only thread of the process: before any op thread starts.
            zygote, self._zygote = self._zygote, None
            launcher = stack.enter_context(self._runtime._launcher(zygote))
            yield from self._drive(job_context, active, launcher, logs)

    @staticmethod
    def _capture_run_logs(job_context, logs, execution_plan):
        """The whole-run log capture when ops cannot have their own (_StepLogs), reported as Dagster does."""
        from dagster._core.events import DagsterEvent, EngineEventData
        from dagster._utils.error import serializable_error_info_from_exc_info

        try:
            yield from logs.for_run([s.key for s in execution_plan.get_steps_to_execute_in_topo_order()])
        except Exception:
            yield DagsterEvent.engine_event(
                job_context,
                "Exception while setting up compute log capture",
                EngineEventData(error=serializable_error_info_from_exc_info(sys.exc_info())),
            )

    def _drive(self, job_context, active, launcher, logs):
        """Launch each step that is ready in a thread of its own (_op_thread) and yield the events the threads
        queue, until the plan is complete or the run is interrupted."""
        from dagster._core.events import DagsterEvent, EngineEventData

        events = queue.Queue()
        # Keyed by launch, not by step: a step up for retry is launched again while the thread of its
        # failed attempt may still be finishing.
        threads, errors, stopping = {}, [], False
        try:
            while (not stopping and not active.is_complete) or threads:
                if not stopping and active.check_for_interrupts():
                    stopping = True
                    active.mark_interrupted()
                    launcher.cancel()
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Interrupted: stopping the Metaflow tasks of %d running ops" % len(threads),
                        EngineEventData.interrupted([key for key, _ in threads]),
                    )
                if not stopping:
                    for step in active.get_steps_to_execute(limit=self._max_concurrent - len(threads)):
                        yield from self._launch(job_context, active, step, launcher, logs, events, threads)
                    yield from active.concurrency_event_iterator(job_context)
                wait = 0.5 if threads else min(max(active.sleep_interval(), 0.01), 0.5)
                try:
                    launch, event, error = events.get(timeout=wait)
                except queue.Empty:
                    continue
                if event is None:  # the op's thread has finished
                    threads.pop(launch).join()
                    logs.close(launch)
                    if error is not None and not isinstance(error, _INTERRUPTS):
                        errors.append(error)
                    if all(key != launch[0] for key, _ in threads):  # not relaunched for a retry
                        active.verify_complete(job_context, launch[0])
                else:
                    yield event
                    active.handle_event(event)
                yield from active.plan_events_iterator(job_context)
        finally:
            if threads:  # leaving early (an exception, or the caller closed us): stop every task
                launcher.cancel()
                for thread in threads.values():
                    thread.join(_KILL_GRACE_SECONDS * 2)
        if stopping:
            raise DagsterExecutionInterruptedError()
        if errors:
            raise errors[0]

    def _launch(self, job_context, active, step, launcher, logs, events, threads):
        """Start the thread of one launch of ``step``, with the logs of its own it writes to (_StepLogs)."""
        self._launches += 1
        launch = (step.key, self._launches)
        captured, streams = logs.open(launch)
        if captured is not None:
            yield captured
        step_context = job_context.for_step(step, active.get_known_state())
        thread = threading.Thread(target=_op_thread, args=(launch, step_context, launcher, streams, events),
                                  name="op %s" % step.key, daemon=True)
        threads[launch] = thread
        thread.start()


def _op_thread(launch, step_context, launcher, streams, events):
    """Body of an op's thread: Dagster's event sequence of the step, then its hooks, queued for the executor.

    ``dagster_event_sequence_for_step`` turns every error of the op into a failure (or retry) event and
    raises only interrupts (and any error when the run asks to raise them); the last item queued for the
    step is ``(launch, None, that exception or None)``. What the op's tasks print goes to ``streams``.
    """
    from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step

    _OP_THREAD.launcher, _OP_THREAD.streams = launcher, streams
    error = None
    try:
        step_events = []
        for event in dagster_event_sequence_for_step(step_context):
            step_events.append(event)
            events.put((launch, event, None))
        for event in _trigger_hook(step_context, step_events):
            events.put((launch, event, None))
    except BaseException as e:
        error = e
    finally:
        _OP_THREAD.launcher = _OP_THREAD.streams = None
        events.put((launch, None, error))


class FlowRuntime:
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

    # ----- load-time checks and job-level objects -------------------------------------------------------

    def _check_stale(self):
        path = self.flow["file"]
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            raise StaleDefinitionsError(
                "flow file %s of flow %s cannot be read (%s); regenerate the definitions with "
                "'python <flow file> dagster create'" % (path, self.flow["name"], e.strerror)
            ) from None
        if digest != self.flow["file_sha256"]:
            raise StaleDefinitionsError(
                "definitions are stale: %s changed after 'dagster create' (sha256 %s, expected %s). "
                "Regenerate them with: python %s dagster create <file>"
                % (path, digest[:12], self.flow["file_sha256"][:12], path)
            )

    # The code package (docs/deploy.md): the flow's directory, packaged into the Metaflow datastore by
    # `create` as Metaflow does for Argo Workflows, so the definitions file runs on a machine that has
    # datastore access but not the flow source. A worker downloads it once per sha into a cache shared by
    # its processes; the op processes that load the file afterwards find it there.

    def _code_package_flow_file(self, package):
        """Path of the flow file inside the extracted code ``package``, downloading it first if needed.

        The download is checked against the package's sha1 (the datastore's content key) and the flow
        file against the sha256 recorded at ``create``. Extraction goes to a private directory renamed
        into place, so concurrent processes never see a partial tree. Raises StaleDefinitionsError.
        """
        root = os.environ.get(CODE_CACHE_ENV) or os.path.join(
            os.path.expanduser("~"), ".cache", "metaflow-dagster", "code"
        )
        dest = os.path.join(root, package["sha"])
        path = os.path.join(dest, os.path.basename(self.flow["file"]))
        if not os.path.isdir(dest):
            self._extract_code_package(package, root, dest)
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            raise StaleDefinitionsError(
                "the code package %s of flow %s has no flow file %s (%s)"
                % (package["url"], self.flow["name"], os.path.basename(path), e.strerror)
            ) from None
        if digest != self.flow["file_sha256"]:
            raise StaleDefinitionsError(
                "the code package %s does not hold the flow file these definitions were compiled from "
                "(sha256 %s, expected %s); regenerate them with 'python <flow file> dagster create'"
                % (package["url"], digest[:12], self.flow["file_sha256"][:12])
            )
        return path

    def _extract_code_package(self, package, root, dest):
        import io
        import shutil
        import tempfile

        from metaflow.package import MetaflowPackage

        try:
            blobs = dict(_flow_datastore(self.flow).load_data([package["sha"]], force_raw=True))
        except Exception as e:
            raise StaleDefinitionsError(
                "cannot download the code package %s of flow %s: %s" % (package["url"], self.flow["name"], e)
            ) from None
        blob = blobs.get(package["sha"])
        if blob is None or hashlib.sha1(blob).hexdigest() != package["sha"]:
            raise StaleDefinitionsError(
                "the code package %s of flow %s is missing or corrupt in the datastore"
                % (package["url"], self.flow["name"])
            )
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".%s-" % package["sha"], dir=root)
        try:
            MetaflowPackage.cls_extract_into(package["metadata"], io.BytesIO(blob), tmp)
            os.chmod(tmp, 0o755)
            os.rename(tmp, dest)
        except OSError:
            if not os.path.isdir(dest):  # else another process of this worker got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _code_package_env(self, package):
        """What Metaflow records as the task's ``code-package`` metadata, so ``Task.code`` finds the package."""
        return {
            "METAFLOW_CODE_URL": package["url"],
            "METAFLOW_CODE_SHA": package["sha"],
            "METAFLOW_CODE_DS": self.flow["settings"]["datastore"],
            "METAFLOW_CODE_METADATA": package["metadata"],
        }

    def executor(self):
        """The executor of every generated job: ops run as threads of the run worker (_OpThreadExecutor), at
        most ``max_workers`` at a time; the launchpad may change ``max_concurrent`` and ``retries``.

        _OpThreadExecutor drives Dagster internals (see _threaded_executor_problem). On a Dagster without
        them, or with METAFLOW_DAGSTER_EXECUTOR=multiprocess in the process loading the file, jobs use
        Dagster's own multiprocess executor instead: the same runs, each op in a process of its own (slower).
        """
        problem = _threaded_executor_problem()
        if problem is not None or os.environ.get(EXECUTOR_ENV) == "multiprocess":
            if problem is not None:
                warnings.warn("metaflow-dagster: %s; jobs of flow %s run with Dagster's multiprocess executor"
                              % (problem, self.flow["name"]), stacklevel=2)
            return _multiprocess_executor(self.flow["options"]["max_workers"])
        from dagster._core.execution.retries import RetryMode, get_retries_config

        runtime = self
        # In a process started to run this job, the zygote is forked now, as the file loads: it imports
        # Metaflow (~0.1 s) while Dagster creates the run and its plan and stores RUN_START, rather than
        # from the executor's creation on, which left the first task waiting for it.
        early = []
        if threading.active_count() == 1 and _executes_job_here(self.flow["job_name"]):
            early.append(self._zygote())

        @executor(
            name="metaflow_threads",
            config_schema={
                "max_concurrent": Field(
                    Int,
                    default_value=self.flow["options"]["max_workers"],
                    description="Ops (Metaflow tasks) running at the same time (Metaflow's --max-workers).",
                ),
                "retries": get_retries_config(),
            },
        )
        def metaflow_threads(init_context):
            cfg = init_context.executor_config
            # The executor is made before the run starts (RUN_START, the run's event log): if this process
            # runs one thread now, the zygote is forked here and imports Metaflow while Dagster does that.
            if early:  # forked when the file loaded; one run per process
                zygote = early.pop()
            else:
                zygote = runtime._zygote() if threading.active_count() == 1 else None
            _reuse_sqlite_engines(init_context.instance)
            return _OpThreadExecutor(
                runtime, RetryMode.from_config(cfg["retries"]), max(1, cfg["max_concurrent"]), zygote
            )

        return metaflow_threads

    def _zygote(self):
        """Fork the zygote of a run (see _Zygote), or None when every task must run as a subprocess.

        Call it while this process runs one thread. The zygote imports Metaflow itself, in parallel with
        whatever this process does next; this process imports it only if it must (input paths over 64 KiB,
        a task that is not forked, a resume, ``@trigger`` metadata): a forked task reports what the op reads.
        """
        if not self._can_fork(None):
            return None
        # What is alive now (Dagster, the definitions) lives as long as the process. Freezing it out of the
        # garbage collector keeps collections in the zygote and its tasks from writing to (and so copying)
        # the pages they share with this process, keeps those in the zygote's import of Metaflow from walking
        # Dagster's heap, and spares the interpreter's final collection over all of it at exit: about a second
        # of CPU for Dagster's heap on a 2-core machine.
        gc.freeze()
        return _Zygote(os.path.dirname(os.path.abspath(os.path.join(self._task_cwd(), self.flow["file"]))))

    def _launcher(self, zygote=None):
        """The _Launcher of a run, with ``zygote`` (the executor forked it early) or one forked now.

        Call it while this process runs one thread.
        """
        if zygote is None:
            zygote = self._zygote()
        gc.freeze()  # the run's set-up too (see _zygote)
        return _Launcher(zygote)

    def param_schema(self):
        """Dagster config schema of the start op: one launchpad field per Metaflow Parameter, as the compiler
        decided it (FLOW["config_schema"]: the Dagster type's name and the Field's keywords)."""
        from dagster import Bool, Float, Int, String

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

    # ----- ids, commands, environment ----------------------------------------------------------------

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

    def _top_level_args(self):
        s = self.flow["settings"]
        args = [
            "--quiet",
            "--no-pylint",
            "--metadata=%s" % s["metadata"],
            "--environment=%s" % s["environment"],
            "--datastore=%s" % s["datastore"],
            "--datastore-root=%s" % s["datastore_root"],
            "--event-logger=%s" % s["event_logger"],
            "--monitor=%s" % s["monitor"],
        ]
        opts = self.flow["options"]
        if opts.get("branch"):
            args.append("--branch=%s" % opts["branch"])
        if opts.get("production"):
            args.append("--production")
        for spec in opts.get("with", []):
            args.append("--with=%s" % spec)
        return args + self._config_args()

    def _config_args(self):
        """Deploy-time Config values, given to every task as Metaflow's own runtime gives them: each Config
        as ``--config-value NAME kv.NAME``, read from a ``--local-config-file`` in Metaflow's stored form
        ``{"user_configs": {name: [value, plain]}}``. Tasks take the values resolved at ``create`` and
        never parse them again (a Config with its own ``parser`` could not be parsed twice), so config
        mutators and ``config_expr`` see in every task what they saw at ``create``.

        The file is named by its content in the user's cache and written once, atomically: the ops and tasks
        of every run share it, and there is one file per distinct set of values, not one per run.
        """
        configs = self.flow["configs"]
        if not configs:
            return []
        # Keys in the IR's order, which is Metaflow's: json.dump in its runtime keeps it, and tasks iterate it.
        text = json.dumps({"user_configs": {c["name"]: json.loads(c["value"]) for c in configs}})
        root = os.path.join(os.path.expanduser("~"), ".cache", "metaflow-dagster", "configs")
        path = os.path.join(root, hashlib.sha256(text.encode("utf-8")).hexdigest() + ".json")
        if not os.path.exists(path):
            import tempfile

            os.makedirs(root, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=root, prefix=".configs-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        args = ["--local-config-file=%s" % path]
        for c in configs:
            args += ["--config-value", c["name"], "kv." + c["name"]]
        return args

    def _command(self, *tail):
        return [sys.executable, self.flow["file"]] + self._top_level_args() + list(tail)

    def _settings_env(self):
        """Metaflow settings fixed at deploy time: the deploying user and the local datastore root."""
        s = self.flow["settings"]
        env = {"METAFLOW_USER": s["username"]}
        if s["datastore"] == "local":
            env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = os.path.dirname(s["datastore_root"])
        return env

    def _env(self, step=None, extra=None):
        """Environment of a task: allowlisted variables of this worker, Metaflow settings, step vars."""
        s = self.flow["settings"]
        env = {k: v for k, v in os.environ.items() if _env_allowed(k, s["env_allowlist"])}
        env.update(self._settings_env())
        # Configs reach tasks as options (_config_args); config variables of the worker must not mix in.
        env.pop("METAFLOW_FLOW_CONFIG", None)
        env.pop("METAFLOW_FLOW_CONFIG_VALUE", None)
        env["METAFLOW_DAGSTER_DEPLOYED"] = "1"
        env.update(self._package_env)
        if step is not None:
            env.update(self.steps[step]["env"])
        env.update(extra or {})
        return env

    # ----- running one Metaflow process ------------------------------------------------------------

    def _task_cwd(self):
        """Where tasks run: beside a local datastore's ``.metaflow`` (where ``create`` ran), as
        ``python flow.py run`` would, so Metaflow's cwd-relative defaults (cards) find the same place;
        otherwise the flow's directory."""
        s = self.flow["settings"]
        if s["datastore"] == "local":
            # A first run on a fresh datastore: Metaflow makes the root itself, but only after we chdir.
            os.makedirs(s["datastore_root"], exist_ok=True)
            return os.path.dirname(s["datastore_root"])
        return os.path.dirname(self.flow["file"])

    def _can_fork(self, step):
        """Whether a task of ``step`` may run in a fork of this process rather than a new interpreter.

        Forking skips interpreter start-up and the imports (most of a task's cost). It needs the same
        interpreter and the same Metaflow configuration as this process: a non-local environment (conda,
        pypi) or a step that sets METAFLOW_* variables runs as a subprocess.
        """
        if os.environ.get("METAFLOW_DAGSTER_SUBPROCESS") == "1" or not hasattr(os, "fork"):
            return False
        if self.flow["settings"]["environment"] != "local":
            return False
        return step is None or not any(k.startswith("METAFLOW_") for k in self.steps[step]["env"])

    def _spawn(self, context, argv, env, timeout, what, fork=False, report=None, logs=None):
        """Run ``argv`` (never through a shell), streaming its output into the Dagster log as it comes.

        ``argv`` is ``[python, flow file, args...]``. With ``fork`` the task runs in a forked child of this
        process that executes the flow file as ``__main__`` with those args, exactly as the interpreter would.
        Kills the whole process group when ``timeout`` seconds (0 = none) pass. Raises Failure on a non-zero
        exit or a timeout, led by the task's own exception when it recorded one. Returns the ``_task_info``
        of ``report["pathspec"]`` (with ``report["keys"]``) when a ``report`` spec is given, else None:
        reported by the task when the zygote forked it, else read here. With ``report["reuse"]`` a task that
        already finished is not run again. With ``logs`` (``{"pathspec", "attempt"}``) what the task printed
        is also saved with the task in Metaflow's datastore, whatever its outcome (_TaskOutput).
        """
        launcher = getattr(_OP_THREAD, "launcher", None)
        if launcher is not None and launcher.cancelled:
            raise DagsterExecutionInterruptedError()
        flow = {"name": self.flow["name"], "settings": self.flow["settings"]}
        spec = None if report is None else dict(report, flow=flow)  # what the task needs to read itself back
        proc = self._start(context, argv, env, what, fork, launcher, spec)
        if proc is None:  # report["reuse"]: the task had finished
            return _task_info(spec["flow"], spec["pathspec"], spec["keys"])
        output = _TaskOutput(context.log, getattr(_OP_THREAD, "streams", None), logs is not None)
        timed_out, report_bytes = False, b""
        try:
            timed_out, report_bytes = self._pump(proc, output, launcher, timeout)
            rc = proc.wait()
        except BaseException:
            # Interrupted (terminate, op failure): never leave the task's process group running.
            self._kill(proc)
            raise
        finally:
            for f in (proc.stdout, proc.stderr, getattr(proc, "report", None)):
                if f is not None:
                    f.close()
            if logs is not None:
                self._save_logs(context, launcher, dict(logs, flow=flow), output)
            output.close()
        if timed_out:
            raise Failure(
                description="%s timed out after %d seconds and was killed" % (what, timeout),
                metadata={"timeout_seconds": timeout},
            )
        reported = json.loads(report_bytes) if report_bytes else None
        if rc != 0:
            task = None
            if report is not None and "attempt" in report:
                task = dict(report, pathspec="%s/%s" % (self.flow["name"], report["pathspec"]))
            raise _task_failure(what, rc, (reported or {}).get("exception"), output.stderr_tail(), task,
                                os.path.basename(self.flow["file"]))
        if spec is not None:  # the task's report, or (none made) the datastore read here
            return reported if reported is not None else _task_info(spec["flow"], spec["pathspec"], spec["keys"])
        return None

    def _start(self, context, argv, env, what, fork, launcher, spec):
        """Start the process of ``argv``: forked by the run's zygote, forked from this process (no op threads)
        or a new interpreter. None when ``spec["reuse"]`` finds the task finished (then nothing runs)."""
        cwd = self._task_cwd()
        if fork and launcher is not None and launcher.zygote is not None:  # never fork a threaded process
            try:
                return launcher.zygote.start(argv[1:], env, cwd, spec)
            except OSError as e:
                context.log.warning("the zygote cannot fork %s (%s); starting a new interpreter" % (what, e))
        if spec is not None and spec.get("reuse"):
            try:
                _task_info(spec["flow"], spec["pathspec"], spec["keys"])
                return None
            except Exception:  # not finished yet: run it
                pass
        if fork and launcher is None:
            return _ForkedTask(argv[1:], env, cwd)
        if env.get(PARAMETERS_ENV):
            argv = _boot_argv(argv)
        return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def _pump(self, proc, output, launcher, timeout):
        """Feed what ``proc`` prints to ``output`` until its streams close or ``timeout`` seconds (0 = none)
        pass (then it is killed). Raises DagsterExecutionInterruptedError when the run is interrupted.
        Returns (timed out, the bytes of its report pipe)."""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        reported = getattr(proc, "report", None)
        if reported is not None:
            sel.register(reported, selectors.EVENT_READ, "report")
        if launcher is not None:
            sel.register(launcher.cancel_fd, selectors.EVENT_READ, "cancel")
        deadline = time.monotonic() + timeout if timeout else None
        report, open_streams = b"", 2 if reported is None else 3
        try:
            while open_streams:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = sel.select(wait)
                if not ready and deadline is not None and time.monotonic() >= deadline:
                    self._kill(proc)
                    return True, report
                for key, _ in ready:
                    if key.data == "cancel":  # the run was interrupted (terminated)
                        raise DagsterExecutionInterruptedError()
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                    if key.data == "report":  # kept whole, read to its end
                        report += chunk
                    else:
                        output.feed(key.data, chunk)
        finally:
            sel.close()
        return False, report

    def _save_logs(self, context, launcher, spec, output):
        """Save what a task printed with it in Metaflow's datastore (_save_task_logs): in a child of the zygote
        (which has Metaflow) or, without one, here. A failure to save is a warning, never the op's failure."""
        spec = dict(spec, **output.log_files())
        try:
            if launcher is not None and launcher.zygote is not None:
                problem = launcher.zygote.save_logs(spec)
            else:
                _save_task_logs(spec)
                problem = None
        except Exception as e:
            problem = str(e) or type(e).__name__
        if problem:
            context.log.warning("the output of task %s is not saved with it in Metaflow: %s" % (spec["pathspec"], problem))

    @staticmethod
    def _kill(proc):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                try:  # a task just forked may not lead its own process group yet
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    return
            try:
                proc.wait(_KILL_GRACE_SECONDS)
                return
            except subprocess.TimeoutExpired:
                continue

    # ----- datastore read-back ------------------------------------------------------------------------

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

    # ----- one task ---------------------------------------------------------------------------------

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
        logs = None if origin else {"pathspec": pathspec, "attempt": attempt}  # clones keep their origin's
        warm = None
        if emitted_events(self.flow, step):
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
        return token, info["values"], self._metadata(pathspec, info["names"])

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
        there, as @retry's would, and ``@retry``/``@catch`` count from the re-execution's first attempt.
        The task's attempts so far are read from Metaflow's datastore (only for re-executions).
        """
        retry = context.retry_number
        if not (context.run.root_run_id or context.run.tags.get(ROOT_RUN_ID_TAG)):
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

    # ----- what the generated ops call ---------------------------------------------------------------

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


# ----- events: @trigger sensors over Dagster's own event log ----------------------------------------------

EVENT_ASSET_PREFIX = "metaflow_event"
TRIGGERS_TAG = "metaflow/triggers"
MAX_PAYLOAD_BYTES = 256 * 1024
_EVENT_PAGE = 200
_TICK_MAX_EVENTS = 1000      # a tick reads at most this many events ...
_TICK_BUDGET_SECONDS = 1.0   # ... or for this long; the next tick goes on from the cursor


class BadEvent(Exception):
    """An event that cannot start a run; the sensor skips it and logs this reason (``event_id``: its id)."""

    def __init__(self, reason, event_id=None):
        super().__init__(reason)
        self.event_id = event_id


def event_asset_key(name):
    """The asset key of event ``name``: ``metaflow_event/<name>``, lossless for every valid event name."""
    from dagster import AssetKey

    return AssetKey([EVENT_ASSET_PREFIX, name])


SIGNATURE_FIELD = "signature"


def event_signature(fields, secret):
    """The signature of an event for ``@trigger(options={"secret_env": NAME})``: ``sha256=`` and the hex
    HMAC-SHA256, keyed with ``secret``, of every field but ``signature`` as canonical JSON (keys sorted, no
    spaces, UTF-8). The event's ``id`` is signed, so a replayed event has the run key of the first one."""
    body = json.dumps({k: v for k, v in fields.items() if k != SIGNATURE_FIELD},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256=" + hmac.new(secret.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).hexdigest()


def coerce_param(ptype, value, where):
    """``value`` from an event payload converted to a Parameter of type ``ptype``, as run config."""
    if isinstance(value, (dict, list)) and ptype != "json":
        raise BadEvent("%s: expected a %s, got a JSON %s" % (where, ptype, type(value).__name__))
    try:
        if ptype == "json":
            if isinstance(value, str):
                json.loads(value)
                return value
            return json.dumps(value)
        if ptype == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if isinstance(value, bool):
            raise ValueError(value)
        if ptype == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip())
        if ptype == "float":
            return float(value)
        return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        raise BadEvent("%s: %r is not a valid %s" % (where, value, ptype)) from None


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
        from dagster._utils.schedules import reverse_cron_string_iterator

        return next(reverse_cron_string_iterator(now, reset["cron"], reset["timezone"])).timestamp()

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
        """
        from dagster import AssetRecordsFilter

        secret = self._secret()
        state = json.loads(cursor) if cursor else {"after": {}, "pending": {}}
        fired_ids = state.setdefault("fired", {})
        requests, skipped = [], []
        started = time.monotonic()
        boundary = self._reset_boundary(now)
        if boundary is not None:
            for name in [n for n, e in state["pending"].items() if e["timestamp"] < boundary]:
                log.info("dropping waiting event %s (id %s): reset_at passed" % (name, state["pending"][name]["id"]))
                del state["pending"][name]
        specs = {e["name"]: e for e in self.events}
        names = list(specs)
        read = 0
        for name in names:
            while time.monotonic() - started < _TICK_BUDGET_SECONDS and read < _TICK_MAX_EVENTS:
                after = state["after"].get(name)
                result = instance.fetch_materializations(
                    AssetRecordsFilter(
                        asset_key=event_asset_key(name),
                        after_storage_id=after,
                        after_timestamp=self.since if after is None else None,
                    ),
                    limit=_EVENT_PAGE,
                    ascending=True,
                )
                read += len(result.records)
                for record in result.records:
                    state["after"][name] = record.storage_id
                    try:
                        event = read_event(record)
                    except BadEvent as e:
                        log.warning("skipping event %s (id %s): %s" % (name, e.event_id, e))
                        skipped.append((name, e.event_id, str(e)))
                        continue
                    unsigned = self._unsigned(event, secret)
                    if unsigned:
                        log.warning("skipping event %s (id %s): %s" % (name, event["id"], unsigned))
                        skipped.append((name, event["id"], unsigned))
                        continue
                    field = self._mismatch(specs[name], event)
                    if field is not None:
                        log.info("passing over event %s (id %s): field %r is not %r"
                                 % (name, event["id"], field, specs[name]["filters"][field]))
                        continue
                    if fired_ids.get(name) == event["id"]:
                        log.info("dropping event %s (id %s): a re-send of one that already fired" % (name, event["id"]))
                        continue
                    state["pending"][name] = event
                    if len(names) == 1 or all(n in state["pending"] for n in names):
                        fired = {n: state["pending"].pop(n) for n in names}
                        fired_ids.update((n, fired[n]["id"]) for n in names)
                        try:
                            config = self.run_config(fired)
                        except BadEvent as e:
                            log.warning("skipping event %s: %s" % (name, e))
                            skipped.append((name, event["id"], str(e)))
                            continue
                        requests.append((
                            "+".join(fired[n]["id"] for n in names),
                            config,
                            [{"timestamp": fired[n]["timestamp"], "id": fired[n]["id"], "name": n,
                              "type": specs[n].get("type", "event")} for n in names],
                        ))
                if len(result.records) < _EVENT_PAGE:
                    break
        return requests, skipped, json.dumps(state, sort_keys=True)


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


# ----- events a run emits: Metaflow's flow-finished event for @trigger_on_finish --------------------------

def emitted_events(flow, step):
    """Names of the events a successful task of ``step`` publishes, as Argo's auto-emit names them (the compiler
    names them: FLOW["steps"][step]["emits"]).

    The end step always publishes ``metaflow.<project flow name or Flow>.<end step>``, plus the ``.end``
    alias that ``@trigger_on_finish`` listens for when the end step has another name; other steps publish
    ``metaflow.<...>.<step>`` only when ``create --emit-step-events`` was given.
    """
    return flow["steps"][step]["emits"]


def emitted_payload(flow, pathspec, now):
    """Payload of the events a task emits: Metaflow's envelope and Argo's fields, all strings.

    ``id`` is the task's pathspec, so a retried task re-sends the same id and consumers drop it.
    """
    flow_name, run_id, step, task_id = pathspec.split("/")
    payload = {
        "id": pathspec,
        "timestamp": str(int(now)),
        "utc_date": time.strftime("%Y%m%d", time.gmtime(now)),
        "generated-by-metaflow": "True",
        "pathspec": pathspec,
        "flow_name": flow_name,
        "run_id": run_id,
        "step_name": step,
        "task_id": task_id,
    }
    project = flow.get("project")
    if project:
        # As Argo: the fields `current` has, the two flags only when true.
        payload.update({"project_name": project["name"], "branch_name": project["branch"]})
        if project["branch"].startswith("user."):
            payload["is_user_branch"] = "True"
        if project["production"]:
            payload["is_production"] = "True"
        payload["project_flow_name"] = project["flow_name"]
    payload["auto-generated-by-metaflow"] = "True"
    return payload


def publish_event(instance, name, payload):
    """Write event ``name`` to the Dagster event log, where every trigger sensor of the instance reads it."""
    from dagster import AssetMaterialization

    instance.report_runless_asset_event(AssetMaterialization(asset_key=event_asset_key(name), metadata=payload))
