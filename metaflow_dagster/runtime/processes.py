"""Running a Metaflow task's process from an op: start it, stream its output, save its logs, kill it."""

import gc
import json
import os
import selectors
import signal
import subprocess
import threading
import time

from dagster import DagsterExecutionInterruptedError, Failure

from .contract import PARAMETERS_ENV
from .executor import _OP_THREAD, _Launcher
from .output import _task_failure, _TaskOutput
from .tasks import _KILL_GRACE_SECONDS, _boot_argv, _ForkedTask, _save_task_logs, _task_info
from .zygote import _Zygote


class TaskProcesses:
    """Starting a Metaflow task's process (forked by the zygote, forked here, or a new interpreter), streaming
    what it prints, saving its logs and killing it: FlowRuntime's part that runs processes."""

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
        # Forked from this process only while it runs one thread (a process of Dagster's multiprocess executor, a
        # Celery worker's, a pod's): a fork copies no other thread, whose locks could then never be released.
        if fork and launcher is None and threading.active_count() == 1:
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
        """Save what a task printed with it in Metaflow's datastore (_save_task_logs): in the zygote's saver
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
