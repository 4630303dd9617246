"""What a Metaflow task prints, and why it failed.

``_TaskOutput`` takes a task's stdout and stderr line by line to the Dagster log, to the op's captured logs
(or this process's streams) and, in Metaflow's log format, to files saved with the task. ``_task_failure``
turns a failed task into the op's Failure, led by the user's exception and the flow file's line.
"""

import collections
import datetime
import os
import re
import shutil
import sys
import tempfile
import uuid

from dagster import Failure, MetadataValue


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
