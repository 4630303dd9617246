"""The Metaflow task process: how it is started and what it reports back.

A task runs ``python <flow file> step ...`` in a process of its own: forked from the run's zygote
(``_task_child``), forked from this process (``_ForkedTask``), or a new interpreter (``_boot_argv`` when it
needs set-up). A forked task reports the artifacts the op reads (``_task_info``) or, when it failed, its
recorded exception (``_task_exception``); ``_save_task_logs`` stores what it printed with it. The functions
marked "runs in a forked child" never return to the caller. Invariant: a task's environment is built from an
allowlist, never copied whole (``_env_allowed``).
"""

import json
import os
import select
import subprocess
import sys
import time

from .contract import PARAMETERS_ENV, TRIGGER_ENV

_KILL_GRACE_SECONDS = 5


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


def _datastore_storage(flow):
    """The storage of the Metaflow datastore of ``flow`` (``name`` and ``settings``), at its root."""
    from metaflow.plugins import DATASTORES

    s = flow["settings"]
    impl = next(d for d in DATASTORES if d.TYPE == s["datastore"])
    if s["datastore"] == "local":
        os.environ.setdefault("METAFLOW_DATASTORE_SYSROOT_LOCAL", os.path.dirname(s["datastore_root"]))
    return impl(s["datastore_root"])


def _worker_name():
    """The worker this process is: the Celery worker's name (``NAME@host``) inside a Celery task, else the host
    (a Kubernetes pod's name, a container's id), then ``:pid``."""
    import socket

    host = None
    celery = sys.modules.get("celery")
    if celery is not None:
        try:
            host = celery.current_task.request.hostname if celery.current_task else None
        except Exception:
            host = None
    return "%s:%d" % (host or socket.gethostname(), os.getpid())


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
    ``Task.stdout``/``.stderr``, ``python flow.py logs`` and the Metaflow UI show it, and record the worker that
    ran it (``spec["worker"]``) as the attempt's task metadata ``dagster-worker`` (``Task.metadata_dict``).
    Needs Metaflow: runs in the zygote's saver (zygote._Saver), or in this process when tasks run without one."""
    from pathlib import Path

    from metaflow.mflog import RUNTIME_LOG_SOURCE

    run_id, step, task_id = spec["pathspec"].split("/")
    ds = _flow_datastore(spec["flow"]).get_task_datastore(run_id, step, task_id, attempt=spec["attempt"], mode="w")
    ds.save_logs(RUNTIME_LOG_SOURCE, {name: Path(spec[name]) for name in ("stdout", "stderr")})
    if spec.get("worker"):
        _register_task_metadata(spec["flow"], spec["pathspec"], spec["attempt"], {"dagster-worker": spec["worker"]})


def _register_task_metadata(flow, pathspec, attempt, fields):
    """Record ``fields`` ({name: text}) as task metadata of attempt ``attempt`` of ``pathspec``, through the
    flow's metadata provider."""
    from types import SimpleNamespace

    from metaflow.metadata_provider import MetaDatum
    from metaflow.metaflow_environment import MetaflowEnvironment
    from metaflow.plugins import METADATA_PROVIDERS

    named = SimpleNamespace(name=flow["name"])
    impl = next(m for m in METADATA_PROVIDERS if m.TYPE == flow["settings"]["metadata"])
    provider = impl(MetaflowEnvironment(named), named, None, None)
    run_id, step, task_id = pathspec.split("/")
    tags = ["attempt_id:%d" % attempt]
    provider.register_metadata(run_id, step, task_id, [MetaDatum(field=k, value=v, type=k, tags=tags)
                                                       for k, v in fields.items()])


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
        if self.returncode is None:
            status = _wait_child(self.pid, timeout)
            if status is None:
                raise subprocess.TimeoutExpired("forked task %d" % self.pid, timeout)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _wait_child(pid, timeout=None):
    """Reap child ``pid``: its wait status, or None if it is still running after ``timeout`` seconds (None: no
    bound). Waits on the child's exit itself, through a pidfd, which is readable once the child has exited; a
    kernel without pidfds (before Linux 5.3) gets a bounded poll instead. ChildProcessError if it is not ours."""
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    try:
        exited = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exited = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            left = deadline - time.monotonic()
            if done or left <= 0:
                return status if done else None
            if exited is None:
                time.sleep(min(0.01, left))  # no pidfd: nothing to wait on but the clock
            else:
                select.select([exited], [], [], left)
    finally:
        if exited is not None:
            os.close(exited)
