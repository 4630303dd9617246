"""Integration aliases: `from metaflow.integrations import DagsterEvent`, as for ArgoEvent."""

ALIASES_DESC = [("DagsterEvent", "metaflow_dagster.events.DagsterEvent")]
