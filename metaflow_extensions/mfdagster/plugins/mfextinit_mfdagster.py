"""Registers metaflow-dagster with Metaflow: the `dagster` command group."""

CLIS_DESC = [("dagster", ".dagster.dagster_cli.cli")]
