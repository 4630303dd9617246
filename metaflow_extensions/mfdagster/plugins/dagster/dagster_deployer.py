"""Metaflow's Deployer API for Dagster: `Deployer("flow.py").dagster().create()`.

Registered as `DEPLOYER_IMPL_PROVIDERS_DESC` with TYPE "dagster", the name of the CLI group, so the Deployer
spawns `python flow.py dagster create --deployer-attribute-file F` and reads the deployment back from F. Options
the CLI does not have are refused here, before any process is spawned or file written. Metaflow imports this
module while it initializes its plugins, so at module level it imports nothing of this package but its
exceptions (`exception.py`, which imports only Metaflow's exception base); `dagster_deployer_objects` imports
this module's siblings, never this module, so the two do not import each other.
"""

from typing import Any, ClassVar, Dict, Optional

from metaflow.runner.deployer_impl import DeployerImpl

from .exception import check_supported

GROUP_OPTIONS = ("name",)


class DagsterDeployer(DeployerImpl):
    """
    Deployer implementation for Dagster.

    Parameters
    ----------
    name : str, optional, default None
        The deployment (Dagster job) to act on. This flow's job name is used if not specified.
    """

    TYPE: ClassVar[Optional[str]] = "dagster"

    def __init__(self, deployer_kwargs: Dict[str, str], **kwargs):
        check_supported("Deployer", deployer_kwargs, GROUP_OPTIONS)
        self._deployer_kwargs = deployer_kwargs
        super().__init__(**kwargs)

    @property
    def deployer_kwargs(self) -> Dict[str, Any]:
        return self._deployer_kwargs

    @staticmethod
    def deployed_flow_type():
        from .dagster_deployer_objects import DagsterDeployedFlow

        return DagsterDeployedFlow

    def create(self, **kwargs) -> "DagsterDeployedFlow":  # noqa: F821
        """
        Compile the flow into a Dagster definitions file and register it in $DAGSTER_HOME/metaflow/workspace.yaml.

        Parameters
        ----------
        file : str, optional, default None
            Definitions file to write; $DAGSTER_HOME/metaflow/definitions/<job name>.py if not specified.
        tags : List[str], optional, default None
            Metaflow tags added to every run.
        namespace : str, optional, default None
            Metaflow namespace of the runs.
        max_workers : int, optional, default 16
            Maximum number of concurrent ops.
        workflow_timeout : int, optional, default 0
            Fail a run that takes longer (seconds); 0 means no limit.

        Returns
        -------
        DagsterDeployedFlow
            The flow deployed to Dagster.
        """
        from .dagster_cli import create
        from .dagster_deployer_objects import DagsterDeployedFlow

        internal = ("ir_only", "deployer_attribute_file")
        check_supported("create", kwargs, [p.name for p in create.params if p.name not in internal])
        return self._create(DagsterDeployedFlow, **kwargs)


_addl_stubgen_modules = ["metaflow_extensions.mfdagster.plugins.dagster.dagster_deployer_objects"]
