"""The platform's executor: in one process, in a process per step, or each step as a Ray job.

Chosen per run in the ``execution`` config (the launchpad or ``dataselect build --executor``):

- ``in_process``: every step in the run's process;
- ``multiprocess`` (the default, as for Dagster's own default executor): a process per step;
- ``ray``: each step is submitted to a Ray cluster as a Ray job (dagster-ray's step handler,
  from the ``deploy`` extra). Steps in the ``gpu`` pool (embeddings, the target reference,
  CoLoR-Filter) ask Ray for ``gpu_step_num_gpus`` GPUs, so a cluster with GPU nodes places
  them there; leave it at 0 on a CPU cluster, where a GPU request could never be placed.
"""

from dagster import Array, Field, Noneable, Permissive, Selector, executor
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.execution.retries import get_retries_config

RAY_CONFIG = Field(
    {
        "address": Field(Noneable(str), default_value=None, description="Ray dashboard address, e.g. http://127.0.0.1:8265."),
        "env_vars": Field(Array(str), default_value=[], description="KEY or KEY=VALUE variables passed to every step's Ray job."),
        "runtime_env": Field(Permissive(), default_value={}, description="Ray runtime_env of every step's Ray job."),
        "gpu_step_num_gpus": Field(float, default_value=0.0, description="GPUs each step of the 'gpu' pool asks Ray for."),
        "retries": get_retries_config(),
    },
    is_required=False,
)


def _requirements(config):
    return [] if "in_process" in config else multiple_process_executor_requirements()


@executor(
    name="platform_executor",
    config_schema=Field(
        Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG, "ray": RAY_CONFIG}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def platform_executor(init_context):
    ((kind, config),) = init_context.executor_config.items()
    if kind == "in_process":
        return _core_in_process_executor_creation(config)
    if kind == "multiprocess":
        return _core_multiprocess_executor_creation(config)
    return _ray_executor(config)


def _ray_executor(config):
    # Imported here: dagster-ray and ray come with the optional ``deploy`` extra.
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.step_delegating import StepDelegatingExecutor
    from dagster_ray.core.executor import RayStepHandler
    from ray.job_submission import JobSubmissionClient

    class PoolAwareRayStepHandler(RayStepHandler):
        """dagster-ray's step handler, asking for GPUs only for the steps of the ``gpu`` pool."""

        def launch_step(self, step_handler_context):
            step_key = self._get_step_key(step_handler_context)
            pool = step_handler_context.get_step_context(step_key).step.pool
            # Steps are launched one at a time from the run's process, so setting this per step is safe.
            self.num_gpus = config["gpu_step_num_gpus"] if pool == "gpu" and config["gpu_step_num_gpus"] else None
            yield from super().launch_step(step_handler_context)

    handler = PoolAwareRayStepHandler(
        client=JobSubmissionClient(config["address"]),
        env_vars=list(config["env_vars"]),
        runtime_env=dict(config["runtime_env"]),
        num_cpus=None,
        num_gpus=None,
        memory=None,
        resources=None,
    )
    return StepDelegatingExecutor(handler, retries=RetryMode.from_config(config["retries"]), should_verify_step=True)
