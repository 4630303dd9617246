"""`python flow.py dagster ...`: compile a Metaflow flow into a Dagster definitions file.

The group runs after Metaflow's own top-level processing (config mutators, `--with` decorators, step
decorator init), exactly as `argo-workflows` does, so the graph read here is the one tasks will run.
"""

import json
import os

from metaflow._vendor import click

from .dagster_compiler import DagsterException, build_ir, compile_ir, write_atomic


@click.group()
def cli():
    pass


@cli.group(help="Commands related to running this flow on Dagster.")
@click.pass_obj
def dagster(obj):
    obj.check(obj.graph, obj.flow, obj.environment, pylint=obj.pylint)


@dagster.command(help="Compile this flow into a Dagster definitions file (serve it with `dagster dev -f FILE`).")
@click.argument("file", required=False)
@click.option("--tag", "tags", multiple=True, default=None, help="Tag every run of this flow (repeatable).")
@click.option("--namespace", default=None, help="Metaflow namespace of the runs.")
@click.option("--max-workers", default=16, show_default=True, type=int, help="Maximum number of concurrent ops.")
@click.option("--workflow-timeout", default=0, type=int, help="Fail a run that takes longer (seconds).")
@click.option("--ir-only", is_flag=True, default=False, help="Print the flow IR as JSON and write nothing.")
@click.option("--deployer-attribute-file", default=None, hidden=True)
@click.pass_obj
def create(obj, file, tags, namespace, max_workers, workflow_timeout, ir_only, deployer_attribute_file):
    if max_workers < 1:
        raise DagsterException("--max-workers must be at least 1 (got %d)" % max_workers)
    if workflow_timeout < 0:
        raise DagsterException("--workflow-timeout must be zero or positive (got %d)" % workflow_timeout)
    ir = build_ir(
        obj, tags=tags or (), namespace=namespace, max_workers=max_workers, workflow_timeout=workflow_timeout
    )
    if ir_only:
        click.echo(json.dumps(ir, indent=2, sort_keys=True))
        return
    if not file:
        raise DagsterException("give the definitions file to write: `dagster create FILE`")
    text = compile_ir(ir)
    write_atomic(file, text)
    obj.echo("Wrote Dagster definitions for *%s* to *%s*." % (obj.flow.name, file), bold=True)
    obj.echo("Serve them with: dagster dev -f %s" % os.path.abspath(file))
    if deployer_attribute_file:
        with open(deployer_attribute_file, "w", encoding="utf-8") as f:
            json.dump(
                {"name": ir["flow"]["job_name"], "flow_name": obj.flow.name, "metadata": obj.metadata.metadata_str()},
                f,
            )
