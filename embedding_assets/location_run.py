"""Runs started from the command line that belong to the UI's code location (``workspace.yaml``).

A run made by ``dagster asset materialize -m ...`` or ``execute_in_process`` records another origin
than the location ``dagster dev`` loads, so the UI warns when it is re-executed. These runs record
the workspace's location as their origin and execute here, in this process, so the command's
progress display sees every shard finish.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._cli.workspace.cli_target import get_repository_python_origin_from_cli_opts
from dagster._core.execution.api import execute_run
from dagster._core.execution.job_execution_result import JobExecutionResult
from dagster._core.remote_origin import (
    CodeLocationOrigin,
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.workspace.load import location_origins_from_yaml_paths
from dagster._utils.hosted_user_process import recon_repository_from_origin
from dagster_shared.cli import PythonPointerOpts

WORKSPACE = Path(__file__).resolve().parent.parent / "workspace.yaml"


def workspace_location(workspace: Path = WORKSPACE) -> ManagedGrpcPythonEnvCodeLocationOrigin:
    """The one code location ``workspace`` loads (a Python module), as ``dagster dev`` loads it."""
    origins: list[CodeLocationOrigin] = list(location_origins_from_yaml_paths([str(workspace)]))
    if len(origins) != 1 or not isinstance(origins[0], ManagedGrpcPythonEnvCodeLocationOrigin):
        raise dg.DagsterInvariantViolationError(f"{workspace} must load exactly one Python module")
    return origins[0]


def materialize(
    instance: dg.DagsterInstance,
    selection: str,
    *,
    partition_tags: Mapping[str, str],
    run_config: Mapping[str, Any] | None = None,
    workspace: Path = WORKSPACE,
) -> JobExecutionResult:
    """Materialize ``selection`` (Dagster's selection syntax) in one run of the workspace's location,
    executed in this process; returns the execution result (its ``success`` says how it went).
    ``partition_tags`` (a shard range) apply when the selection holds a partitioned asset."""
    location = workspace_location(workspace)
    target = location.loadable_target_origin
    pointer = PythonPointerOpts(
        module_name=target.module_name,
        attribute=target.attribute,
        working_directory=target.working_directory or str(workspace.parent),
    )
    repository = recon_repository_from_origin(get_repository_python_origin_from_cli_opts(pointer))
    definition = repository.get_definition()
    keys = dg.AssetSelection.from_coercible(selection.split(",")).resolve(definition.asset_graph)
    job_def = definition.get_implicit_job_def_for_assets(keys)
    if job_def is None:
        raise dg.DagsterInvariantViolationError(f"{selection!r} mixes assets of different partitions")
    job = repository.get_reconstructable_job(job_def.name)
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, definition.name), job_def.name)
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags=partition_tags if job_def.partitions_def is not None else {},
        asset_selection=frozenset(keys),
        remote_job_origin=origin,
        job_code_origin=job.get_python_origin(),
    )
    return execute_run(job, run, instance)
