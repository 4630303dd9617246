"""The zygote: a single-threaded process that forks every Metaflow task of a run (see _Zygote)."""

import gc
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from .tasks import _KILL_GRACE_SECONDS, _save_task_logs, _task_child, _wait_child

_ZYGOTE_MAX_REQUEST = 1 << 20


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
    # What the zygote imported lives as long as it does, in every task: frozen out of the garbage collector,
    # a task's full collections do not write to (and so copy) the pages it shares with the zygote.
    gc.freeze()


def _saver_serve(sock):  # pragma: no cover - runs in the zygote's saver
    """Main loop of the zygote's saver (see _Saver): save the logs of each task a request names, in a thread
    per request (several ops' saves may wait on a remote datastore at once); return at the end of ``sock``,
    once every save has finished.

    A request is what the zygote received for it, ``[argv, env, cwd, {"save_logs": spec}]``, with the
    request's stdout, stderr and status descriptors; the zygote has written the status pipe's first line.
    The saver writes a wait status, as the zygote does for a task it reaped (exit code 0, or 1 with the reason
    on the request's stderr), then closes the three."""
    threads = []
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, _ZYGOTE_MAX_REQUEST, 3)
        if not msg:
            break
        thread = threading.Thread(target=_saver_request, args=(json.loads(msg)[3]["save_logs"], *fds))
        thread.start()
        threads = [t for t in threads if t.is_alive()] + [thread]
    for thread in threads:
        thread.join()


def _saver_request(spec, out_w, err_w, status_w):  # pragma: no cover - runs in the zygote's saver
    """Save the logs of one task (_save_task_logs) for a request of _saver_serve, and answer it."""
    code = 1
    try:
        _save_task_logs(spec)
        code = 0
    except BaseException as e:
        _write_quietly(err_w, ("cannot save the logs of %s: %s\n" % (spec.get("pathspec"), e)).encode())
    finally:
        _write_quietly(status_w, b"%d\n" % (code << 8))  # a wait status, as os.waitpid gives it
        for fd in (out_w, err_w, status_w):
            os.close(fd)


class _Saver:  # pragma: no cover - runs in the zygote
    """The zygote's saver: one process, forked from the zygote at the first task whose logs are saved, that
    saves every task's logs (_saver_serve) instead of a child forked per task. A fork of the zygote costs a
    process start and its copy-on-write faults (~1,300 page faults, a few ms of system time), as much as the
    save it ran. Forked from the zygote, so single-threaded at the fork; its threads never fork."""

    def __init__(self):
        self.pid = None
        self._sock = None

    def pid_for(self, inherited):
        """The saver's pid, starting it first if there is none (0 if it cannot be forked). ``inherited``: the
        zygote's descriptors, which the saver closes."""
        if self._sock is None:
            try:
                self._start(inherited)
            except OSError:
                return 0
        return self.pid

    def forward(self, msg, fds, inherited):
        """Hand a save request and its descriptors to the saver, restarting it once if it is gone (killed at a
        save's timeout). False when no saver takes it."""
        for _ in range(2):
            if self._sock is None and not self.pid_for(inherited):
                return False
            try:
                socket.send_fds(self._sock, [msg], fds)
                return True
            except OSError:
                self.close()
        return False

    def _start(self, inherited):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                for fd in [ours.detach(), *inherited]:  # raw closes, as a task's (see _zygote_serve)
                    os.close(fd)
                _saver_serve(theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self._sock = pid, ours

    def fds(self):
        """The zygote's descriptors of the saver, which a task closes."""
        return [self._sock.detach()] if self._sock is not None else []

    def close(self):
        """Let the saver finish the saves it has and exit (the zygote reaps it with its tasks)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


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
    saver = _Saver()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == wake_r:
                os.read(wake_r, 4096)
                while True:  # every child that has exited: tasks, savers
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
                saver.close()
                return
            argv, env, cwd, spec = json.loads(msg)
            out_w, err_w, status_w, *report_w = fds
            for fd in report_w:  # received descriptors are inheritable: no process the task starts gets it
                os.set_inheritable(fd, False)
            if spec and "save_logs" in spec:  # to the saver, which answers as a child would (_saver_serve)
                # What a saver forked now must close: the zygote's own descriptors, this request's too.
                inherited = [sel.fileno(), sock.fileno(), wake_r, wake_w, *status_fds.values(), *fds]
                _write_quietly(status_w, b"%d\n" % saver.pid_for(inherited))
                if not saver.forward(msg, [out_w, err_w, status_w], inherited):
                    _write_quietly(err_w, b"the zygote cannot start a process to save them\n")
                    _write_quietly(status_w, b"256\n")
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                # Raw closes only: the epoll instance is shared with the zygote, unregistering would touch it.
                for fd in [sel.fileno(), sock.detach(), wake_r, wake_w, status_w, *status_fds.values(),
                           *saver.fds()]:
                    os.close(fd)
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
        """Save a task's logs in the zygote's saver (_Saver). Returns None, or why they were not saved."""
        child = _ZygoteTask(self, [], {}, None, {"save_logs": spec})
        err = b""
        try:
            deadline = time.monotonic() + timeout
            open_fds = [child.stdout, child.stderr, child.report]
            while open_fds:
                ready = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))[0]
                if not ready:  # the saver is stuck: end it (the zygote starts another for the next save)
                    if child.pid > 0:
                        try:
                            os.kill(child.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
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
            if _wait_child(self.pid, _KILL_GRACE_SECONDS) is None:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped by someone else
            pass

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
