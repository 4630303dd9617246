"""Registers metaflow-dagster with Metaflow: the `dagster` command group and the Deployer implementation."""

CLIS_DESC = [("dagster", ".dagster.dagster_cli.cli")]
DEPLOYER_IMPL_PROVIDERS_DESC = [("dagster", ".dagster.dagster_deployer.DagsterDeployer")]
