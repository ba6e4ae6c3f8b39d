"""Where a run's steps execute: in the run's own process, one subprocess per step, or as Ray jobs.

One executor serves every job; each run picks its mode in run config, so the UI, the schedule,
the sensor and the ``dataselect`` command launch the same jobs whichever engine runs the steps::

    execution: {config: {in_process: {}}}
    execution: {config: {multiprocess: {max_concurrent: 2}}}
    execution: {config: {ray: {address: "http://head:8265", gpus_per_gpu_step: 1}}}

The ``ray`` mode hands each step to ``dagster-ray``'s executor (the ``deploy`` extra), which
submits it as a Ray job through the cluster's job API. The step then runs
``dagster api execute_step`` on a Ray worker, against the same instance (``DAGSTER_HOME``,
e.g. on PostgreSQL) and the same store: every step reads and writes files under the storage
root, so the workers need that root too (a shared filesystem or an object-store URL).
"""

import os

from dagster import (
    Array,
    Field,
    Float,
    Noneable,
    Permissive,
    Selector,
    StringSource,
    executor,
)
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.step_delegating import (
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)

# The pool of the steps that use an accelerator when there is one (see platform_assets).
GPU_POOL = "gpu"

# Passed from the launching process to each Ray step: which instance and which code, and the
# platform's own settings. Database credentials are not: Ray keeps a job's environment in its
# job table, which its dashboard shows, so the workers get DAGSTER_PG_* from their own environment.
FORWARDED_PREFIXES = ("DATASELECT_",)
FORWARDED_NAMES = ("DAGSTER_HOME", "PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GX_ANALYTICS_ENABLED")

RAY_CONFIG = Field(
    {
        "address": Field(StringSource, description="The Ray cluster's job API, e.g. http://127.0.0.1:8265."),
        "gpus_per_gpu_step": Field(
            Float,
            default_value=0.0,
            description="GPUs each step of the gpu pool asks Ray for, so that a cluster places those steps on its GPU "
            "nodes. Leave 0 on a cluster without GPUs, where such a request would never be scheduled.",
        ),
        "env_vars": Field(Array(str), default_value=[], description="More variables (NAME or NAME=VALUE) for the steps."),
        "runtime_env": Field(Noneable(Permissive()), default_value=None, description="Ray runtime_env for every step."),
        "max_concurrent": Field(Noneable(int), default_value=None, description="Steps in flight at once (default: no limit)."),
        "retries": get_retries_config(),
    },
)


def _forwarded_environment(extra: list[str]) -> list[str]:
    names = [name for name in os.environ if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES]
    return [*sorted(names), *extra]


def _ray_executor_creation(config: dict):
    from dagster_ray.core.executor import RayStepHandler
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(config["address"])

    def handler(num_gpus: float | None) -> RayStepHandler:
        return RayStepHandler(
            client=client,
            env_vars=_forwarded_environment(config["env_vars"]),
            runtime_env=config["runtime_env"],
            num_cpus=None,
            num_gpus=num_gpus,
            memory=None,
            resources=None,
        )

    return StepDelegatingExecutor(
        PoolPlacedStepHandler(default=handler(None), gpu=handler(config["gpus_per_gpu_step"] or None)),
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config["max_concurrent"],
        should_verify_step=True,
    )


class PoolPlacedStepHandler(StepHandler):
    """Sends the gpu pool's steps through a handler that asks Ray for GPUs, the other steps through ``default``."""

    def __init__(self, default: StepHandler, gpu: StepHandler):
        super().__init__()
        self.default, self.gpu = default, gpu

    @property
    def name(self) -> str:
        return "PoolPlacedStepHandler"

    def _for(self, context: StepHandlerContext) -> StepHandler:
        [step_key] = context.execute_step_args.step_keys_to_execute
        return self.gpu if context.get_step_context(step_key).step.pool == GPU_POOL else self.default

    def launch_step(self, context: StepHandlerContext):
        return self._for(context).launch_step(context)

    def check_step_health(self, context: StepHandlerContext):
        return self._for(context).check_step_health(context)

    def terminate_step(self, context: StepHandlerContext):
        return self._for(context).terminate_step(context)


def _requirements(config):
    return multiple_process_executor_requirements() if ("multiprocess" in config or "ray" in config) else []


@executor(
    name="in_process_multiprocess_or_ray",
    config_schema=Field(
        Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG, "ray": RAY_CONFIG}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def platform_executor(init_context):
    """Dagster's default executor (in_process or multiprocess) plus a ``ray`` mode."""
    config = init_context.executor_config
    if "ray" in config:
        return _ray_executor_creation(config["ray"])
    if "in_process" in config:
        return _core_in_process_executor_creation(config["in_process"])
    return _core_multiprocess_executor_creation(config["multiprocess"])
