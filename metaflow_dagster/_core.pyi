"""The metaflow-dagster compiler core: flow IR in, Dagster definitions source out."""

from typing import Any, Final, List, Optional, TypedDict

__version__: Final[str]
IR_VERSION: Final[int]

class Diagnostic(TypedDict):
    severity: str  # "error" or "warning"
    flow: Optional[str]  # compile_many: the flow's name, or "#N" for the Nth IR when it gives none
    step: Optional[str]
    file: Optional[str]
    line: int  # 0 when unknown
    message: str

class CompileError(ValueError):
    """The flow IR has errors; str() gives them one per line."""

    diagnostics: List[Diagnostic]

def compile(ir: dict[str, Any], runtime_src: str) -> str:
    """Compile the flow IR (docs/ir.md) into the source of a Dagster definitions file."""

def compile_many(irs: List[dict[str, Any]], runtime_src: str) -> str:
    """Compile several flow IRs into one definitions file: one code location with all their jobs."""

def job_name(name: str) -> str:
    """The Dagster job name of a flow called ``name`` (its project_flow_name under @project)."""
