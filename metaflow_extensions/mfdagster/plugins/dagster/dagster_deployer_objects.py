"""DeployedFlow and TriggeredRun for Dagster deployments (Metaflow's Deployer API).

`trigger`, `resume` and `delete` run the `dagster` CLI commands through the Deployer, as Argo's objects do, and
read the run back from the attribute file the command writes. Status and termination talk to the Dagster
instance in the deployer's DAGSTER_HOME directly (metaflow_dagster/deployments.py), so polling a run costs no
process. `from_deployment` rebuilds a triggerable flow from the deployment alone: it writes a stand-in flow
file with the deployed flow's name and parameters (from the generated file's FLOW literal) and acts on the
deployment by name, so neither the original flow file, its configs nor its @project branch are needed.
"""

import json
import os
import sys
import time
from typing import ClassVar, Optional

from metaflow.runner.deployer import DeployedFlow, Deployer, TriggeredRun
from metaflow.runner.utils import get_lower_level_group, handle_timeout, temporary_fifo

from metaflow_dagster import deployments as dep
from metaflow_dagster.deployments import write_atomic

from .exception import DagsterException, check_supported

_STAND_IN_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool", "json": "JSONType"}


def stand_in_flow(flow):
    """Source of a flow file with the deployed flow's class name and Parameters, and a trivial graph."""
    lines = [
        "# Stand-in for the deployed flow %s: its name and parameters only (DeployedFlow.from_deployment)." % flow["name"],
        "from metaflow import FlowSpec, IncludeFile, JSONType, Parameter, step",
        "",
        "",
        "class %s(FlowSpec):" % flow["name"],
    ]
    for p in flow["parameters"]:
        kind = "IncludeFile(%r" % p["name"] if p["type"] == "file" else "Parameter(%r, type=%s" % (
            p["name"], _STAND_IN_TYPES[p["type"]])
        lines.append("    %s = %s, help=%r, required=%r)" % (p["var"], kind, p["help"], p["required"]))
    lines += [
        "", "    @step", "    def start(self):", "        self.next(self.end)",
        "", "    @step", "    def end(self):", "        pass",
        "", "", 'if __name__ == "__main__":', "    %s()" % flow["name"], "",
    ]
    return "\n".join(lines)


def _parameters_optional_for_resume():
    """Let the Deployer build a `resume` command without the flow's required Parameters.

    Metaflow's click API gives a command that takes the flow's Parameters (`resume`, like `trigger`) one click
    option per Parameter, made from its declaration, and refuses a call that leaves out a required one. A
    resume keeps the origin run's value of every Parameter not given (the CLI's options are never required,
    dagster_cli._optional_parameters), so those options are made optional here. They are the ones the click
    API added to the `resume` command's params when it built the group (its own options are
    ``original_params``), and it reads ``required`` when a command is built.
    """
    from .dagster_cli import resume

    for param in resume.params:
        if param not in getattr(resume, "original_params", resume.params):
            param.required = False


def _run_command(deployer, method, attributes, **kwargs):
    """Run `python FLOW [top-level] dagster [--name] METHOD kwargs`; returns (exit code, attribute file text)."""
    with temporary_fifo() as (path, fd):
        if attributes:
            kwargs["deployer_attribute_file"] = path
        group = get_lower_level_group(deployer.api, deployer.top_level_kwargs, deployer.TYPE, deployer.deployer_kwargs)
        if method == "resume":
            _parameters_optional_for_resume()
        command = getattr(group, method)(**kwargs)
        pid = deployer.spm.run_command(
            [sys.executable, *command], env=deployer.env_vars, cwd=deployer.cwd, show_output=deployer.show_output
        )
        command_obj = deployer.spm.get(pid)
        try:
            content = handle_timeout(fd, command_obj, deployer.file_read_timeout) if attributes else None
        except RuntimeError as e:
            raise DagsterException("`dagster %s` of *%s* failed: %s" % (method, deployer.name, e)) from None
        command_obj.sync_wait()
        code = command_obj.process.returncode
        if code != 0 and attributes:
            with open(command_obj.log_files["stderr"], encoding="utf-8") as f:
                tail = "".join(f.readlines()[-20:])
            raise DagsterException("`dagster %s` of *%s* failed:\n%s" % (method, deployer.name, tail))
        return code, content


class DagsterTriggeredRun(TriggeredRun):
    """A run of a deployed flow on Dagster."""

    def __init__(self, deployer, content):
        super().__init__(deployer, content)
        info = json.loads(content)
        self.dagster_run_id = info["dagster_run_id"]
        self.dagster_home = info["dagster_home"]
        self.dagster_ui_url = info["dagster_ui_url"]

    @property
    def dagster_status(self) -> Optional[str]:
        """The Dagster run status (QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...), None if unknown."""
        return dep.dagster_status(self.dagster_home, self.dagster_run_id)

    @property
    def status(self) -> Optional[str]:
        """PENDING, RUNNING, SUCCEEDED or FAILED (a terminated run is FAILED); None if the run is unknown."""
        raw = self.dagster_status
        return None if raw is None else dep.STATUS.get(raw, "PENDING")

    @property
    def is_running(self) -> bool:
        return self.status in ("PENDING", "RUNNING")

    @property
    def failure(self) -> Optional[str]:
        """Why the run failed: each failed step with its task, attempt and the user's exception (type, message,
        the flow file's frame), or why the run failed before any step did. None unless it failed."""
        with dep.instance(self.dagster_home) as inst:
            return dep.failure_reason(inst, self.dagster_run_id)

    @property
    def run(self):
        """The Metaflow Run (None until its start task runs). Raises DagsterException with the reason when the
        Dagster run failed before Metaflow recorded any task, rather than leaving callers waiting on None."""
        run = super().run
        if run is None and self.status == "FAILED":
            raise DagsterException("run %s failed on Dagster before Metaflow recorded it: %s"
                                   % (self.pathspec, self.failure))
        return run

    def wait_for_completion(self, check_interval: int = 5, timeout: Optional[int] = None):
        """Wait until the run finishes. Raises TimeoutError after ``timeout`` seconds."""
        start = time.time()
        while self.is_running:
            if timeout is not None and time.time() - start > timeout:
                raise TimeoutError("Run %s did not finish within %s seconds." % (self.pathspec, timeout))
            time.sleep(check_interval)

    def terminate(self, **kwargs) -> bool:
        """Terminate the run (the UI's Terminate). Returns False if it had already finished."""
        check_supported("terminate", kwargs, ())
        with dep.instance(self.dagster_home) as inst:
            run = inst.get_run_by_id(self.dagster_run_id)
            return run is not None and dep.terminate(inst, run)


class DagsterDeployedFlow(DeployedFlow):
    """A flow deployed to Dagster: a definitions file recorded in $DAGSTER_HOME/metaflow/deployments/."""

    TYPE: ClassVar[Optional[str]] = "dagster"

    @property
    def deployment(self) -> "dep.Deployment":
        """The deployment: name, DAGSTER_HOME, definitions file and the generated file's FLOW literal."""
        return dep.open_deployment(self.name, environ=self.deployer.env_vars)

    def _run(self, method, **kwargs):
        _, content = _run_command(self.deployer, method, True, **kwargs)
        return DagsterTriggeredRun(deployer=self.deployer, content=content)

    def trigger(self, **kwargs) -> DagsterTriggeredRun:
        """
        Trigger a run on the Dagster instance in DAGSTER_HOME; returns at once with the run's pathspec.

        Parameters
        ----------
        **kwargs : Any
            The flow's Parameters; `wait=True` returns only when the run finished (and raises if it failed).
        """
        return self._run("trigger", **kwargs)

    def resume(self, origin_run_id: str, step_to_rerun: Optional[str] = None, **kwargs) -> DagsterTriggeredRun:
        """
        Resume a run: tasks that finished in the origin run are cloned, the others (and every task from
        `step_to_rerun` on) run again; returns at once with the new run's pathspec.

        Parameters
        ----------
        origin_run_id : str
            The Metaflow run id of the run to resume.
        step_to_rerun : str, optional, default None
            Run this step and every step after it again, even where the origin run finished them.
        **kwargs : Any
            The flow's Parameters, typed and checked as for `trigger`: those given apply to the resumed run
            (tasks that run again see them; cloned tasks keep the origin's artifacts), the others keep the
            origin run's values, required ones included. `wait=True` returns only when the run finished.
        """
        if step_to_rerun is not None:
            kwargs["step_to_rerun"] = step_to_rerun
        return self._run("resume", origin_run_id=origin_run_id, **kwargs)

    def delete(self, **kwargs) -> bool:
        """Remove the deployment. Returns True if the command succeeded."""
        code, _ = _run_command(self.deployer, "delete", False, **kwargs)
        return code == 0

    @classmethod
    def from_deployment(cls, identifier: str, metadata: Optional[str] = None) -> "DagsterDeployedFlow":
        """The deployment named ``identifier`` (its Dagster job name) in this process's DAGSTER_HOME."""
        from metaflow.client.core import get_metadata

        d = dep.open_deployment(identifier, what="from_deployment")
        stand_in = os.path.join(dep.Workspace(d.home).dir, "stand-ins", "%s.py" % identifier)
        os.makedirs(os.path.dirname(stand_in), exist_ok=True)
        write_atomic(stand_in, stand_in_flow(d.flow))
        env = {"METAFLOW_USER": d.flow["settings"]["username"], "DAGSTER_HOME": d.home}
        deployer = Deployer(stand_in, env=env).dagster(name=identifier)
        deployer.name = identifier
        deployer.flow_name = d.flow["name"]
        deployer.metadata = metadata or get_metadata()
        return cls(deployer=deployer)

    @classmethod
    def list_deployed_flows(cls, flow_name: Optional[str] = None):
        """Yield every deployment in DAGSTER_HOME (of flow ``flow_name`` only, if given)."""
        home = dep.require_home(what="list_deployed_flows")
        for defs in dep.Workspace(home).deployments().values():
            try:
                flows = dep.read_flows(defs)  # a file of several flows (create --add-flow) deploys each
            except dep.DeploymentException:
                continue
            for flow in flows:
                if flow_name is None or flow["name"] == flow_name:
                    yield cls.from_deployment(flow["job_name"])

    @classmethod
    def get_triggered_run(cls, identifier: str, run_id: str, metadata: Optional[str] = None) -> DagsterTriggeredRun:
        """The run with Metaflow run id ``run_id`` of deployment ``identifier``."""
        deployed = cls.from_deployment(identifier, metadata)
        d = deployed.deployment
        with dep.instance(d.home) as inst:
            run = dep.get_run(inst, d.flow, run_id)
        content = {
            "metadata": deployed.metadata,
            "pathspec": "%s/%s" % (d.flow["name"], run_id),
            "name": run_id,
            "dagster_run_id": run.run_id,
            "dagster_home": d.home,
            "dagster_ui_url": dep.run_url(run.run_id, dep.find_webserver(d.home, deployed.deployer.env_vars)),
        }
        return DagsterTriggeredRun(deployer=deployed.deployer, content=json.dumps(content))
