"""A fleet of deployed flows: many small, real flows deployed to one Dagster home (the scale test and bench).

Each flow is its own file and class (three steps and a Parameter), deployed as `create` deploys it: the
definitions file the C core compiles from the flow's IR, recorded as a deployment of the home. Running
`python flow.py dagster create` 200 times would spend minutes starting Metaflow; here Metaflow exports the IR
of the first flow once (`create --ir-only`), and every other flow's IR is that one with its own name, file
and sha256 (the flows differ by their class name only), compiled by the same core. Flows that need more
than the template (triggers, schedules) are deployed with the real `create`.
"""

import copy
import hashlib
import json
import os
import subprocess
import sys

TEMPLATE = '''from metaflow import FlowSpec, Parameter, step


class {name}(FlowSpec):
    """A flow of the fleet: three steps and a Parameter."""

    n = Parameter("n", default=7, type=int)

    @step
    def start(self):
        self.x = self.n
        self.next(self.middle)

    @step
    def middle(self):
        self.x += 1
        self.next(self.end)

    @step
    def end(self):
        self.result = self.x


if __name__ == "__main__":
    {name}()
'''


def flow_name(i):
    return "Fleet%03dFlow" % i


def write_flow(directory, i):
    path = os.path.join(directory, "fleet_%03d.py" % i)
    with open(path, "w") as f:
        f.write(TEMPLATE.format(name=flow_name(i)))
    return path


def export_ir(flow_file, env, cwd):
    """The IR `create` would compile for ``flow_file`` (`python FLOW dagster create --ir-only`)."""
    proc = subprocess.run([sys.executable, flow_file, "--no-pylint", "dagster", "create", "--ir-only"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout[proc.stdout.index("{\n"):])


def retarget(ir, name, path):
    """``ir`` (of a fleet flow) as the IR of the fleet flow ``name`` in ``path``."""
    ir = copy.deepcopy(ir)
    with open(path, "rb") as f:
        ir["flow"].update(name=name, job_name=name, file=path, file_sha256=hashlib.sha256(f.read()).hexdigest())
    for step in ir["steps"]:
        step["file"] = path
    return ir


def deploy_fleet(home, directory, count, env, start=0):
    """Deploy fleet flows ``start`` .. ``start + count - 1`` from ``directory`` to the Dagster ``home``;
    returns {job name: definitions file}."""
    from metaflow_dagster import deployments
    from metaflow_extensions.mfdagster.plugins.dagster.dagster_compiler import compile_ir

    template = export_ir(write_flow(directory, start), env, directory)
    workspace = deployments.Workspace(home)
    deployed = {}
    for i in range(start, start + count):
        name, path = flow_name(i), write_flow(directory, i)
        defs = os.path.join(directory, "fleet_%03d_dagster.py" % i)
        deployments.write_atomic(defs, compile_ir(retarget(template, name, path)))
        workspace.register(name, defs)
        deployed[name] = defs
    return deployed


def rss_bytes(pids):
    """The resident memory of the processes ``pids`` together (VmRSS, summed)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def code_servers(pids):
    """The pids among ``pids`` of gRPC code servers that load user code (`dagster api grpc`)."""
    found = []
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"api" in argv and b"grpc" in argv:
            found.append(pid)
    return found
