"""The command line and the environment of a Metaflow task, built from the FLOW literal."""

import hashlib
import json
import os
import sys

from .tasks import _env_allowed


class TaskCommands:
    """The command line and environment of a Metaflow task: FlowRuntime's part that builds what a task runs
    with, from the FLOW literal and an allowlist of this worker's variables."""

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
