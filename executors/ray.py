"""The Ray executor: tasks as Ray tasks on a cluster, keyed reductions through Ray Data.

`map` submits each task as a Ray task, at most `workers` in flight, and yields results as
`ray.wait` hands them back. A task whose worker process dies (a node lost, a process
killed) is a system failure and Ray runs it again, up to `MAX_RETRIES` times; an exception
the task itself raises is not retried and is raised again here, as it was raised there.

`reduce` never hand-writes a shuffle: Ray Data reads the exchange's files, keeps the rows
of the buckets asked for (a filter pushed down to the parquet scan), groups them by the
bucket column and calls the reduce function once per group. Buckets no producer wrote to
have no group, so their calls (with an empty table) run afterwards as ordinary tasks.

Task functions travel by reference (module-level functions, or partials of them): every
node must import the same project the driver does. The exchange must lie where every node
reads it (object storage, or a shared folder); the AWS variables set in the driver (the
endpoint, keys, region) are handed to the workers with the job.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import pyarrow as pa

from executors.base import BUCKET_COLUMN, Exchange, Executor

T = TypeVar("T")
R = TypeVar("R")
MAX_RETRIES = 3  # runs of a task after its worker process died
IN_FLIGHT_PER_CPU = 2  # tasks queued per cluster CPU when `workers` sets no cap
# Forwarded to the cluster's workers so that they read and write the storage the driver
# names (an S3-compatible endpoint, its keys and region), when they are set here.
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
RESULT_COLUMN = "result"


def call_task(fn: Callable[[T], R], task: T) -> R:
    """One task, on a Ray worker (the function travels once, as an object reference)."""
    pa.set_cpu_count(1)  # the task holds one CPU: Arrow's pool must not take them all
    return fn(task)


def reduce_group(rows: pa.Table, fn: Callable[[int, pa.Table], Any], schema: pa.Schema) -> pa.Table:
    """One bucket's rows, on a Ray Data worker: `fn(bucket, rows)`, its result pickled."""
    pa.set_cpu_count(1)  # as in `call_task`
    bucket = int(rows.column(BUCKET_COLUMN)[0].as_py())
    result = fn(bucket, rows.select(schema.names).cast(schema))
    return pa.table(
        {
            BUCKET_COLUMN: pa.array([bucket], pa.int32()),
            RESULT_COLUMN: pa.array([pickle.dumps(result, protocol=5)], pa.binary()),
        }
    )


def reduce_empty(job: tuple[Callable[[int, pa.Table], Any], pa.Schema, int]) -> Any:
    """The reduce call of a bucket that holds no rows."""
    fn, schema, bucket = job
    return fn(bucket, schema.empty_table())


def task_name(fn: Callable[..., Any]) -> str:
    """The name Ray shows for a task (and puts in its worker's process title)."""
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__name__", "task"))


def configure_ray_data() -> None:
    """Ray Data as a stage wants it: quiet (no progress bars, banners or statistics, only
    errors logged) and grouping by a sort-based shuffle of tasks. The default hash shuffle
    keeps a pool of aggregator actors, each holding a CPU: on a small cluster they starve
    the tasks that feed them, and it is several times slower for a stage's few buckets."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    with warnings.catch_warnings():  # Ray's own defaults trip its deprecation warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.verbose_stats_logs = False
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    logging.getLogger("ray.data").setLevel(logging.ERROR)


class RayExecutor(Executor):
    """Runs tasks on the Ray cluster at `address`, at most `workers` at once (0: its CPUs)."""

    name = "ray"

    def __init__(self, address: str = "auto", workers: int = 0) -> None:
        import ray

        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            env = {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}
            ray.init(
                address=address,
                ignore_reinit_error=True,
                log_to_driver=False,
                logging_level=logging.WARNING,
                include_dashboard=False,
                runtime_env={"env_vars": env} if env else None,
            )
        configure_ray_data()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capped = workers > 0
        self.workers = workers if self.capped else max(1, cpus)

    @property
    def in_flight(self) -> int:
        return self.workers if self.capped else self.workers * IN_FLIGHT_PER_CPU

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        import ray

        if not tasks:
            return
        remote: Any = ray.remote(call_task).options(
            name=task_name(fn), num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False
        )
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        submitted = 0
        try:
            while submitted < len(tasks) or pending:
                while submitted < len(tasks) and len(pending) < self.in_flight:
                    pending[remote.remote(fn_ref, tasks[submitted])] = submitted
                    submitted += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    yield pending.pop(ref), result_of(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def reduce(
        self, exchange: Exchange, fn: Callable[[int, pa.Table], R], buckets: Sequence[int]
    ) -> Iterator[tuple[int, R]]:
        wanted = sorted({int(b) for b in buckets})
        files = exchange.files() if wanted else []
        reduced: set[int] = set()
        if files:
            for bucket, result in self._reduce_groups(files, exchange.schema, fn, wanted):
                reduced.add(bucket)
                yield bucket, result
        empty = [b for b in dict.fromkeys(buckets) if int(b) not in reduced]
        jobs = [(fn, exchange.schema, int(b)) for b in empty]
        for position, result in self.map(reduce_empty, jobs):
            yield empty[position], result

    def _reduce_groups(
        self,
        files: list[str],
        schema: pa.Schema,
        fn: Callable[[int, pa.Table], R],
        wanted: list[int],
    ) -> Iterator[tuple[int, R]]:
        """(bucket, result) for every bucket in `wanted` that holds rows, via Ray Data."""
        import ray.data
        from ray.data.expressions import col

        partitions = max(1, min(len(wanted), self.workers * IN_FLIGHT_PER_CPU))
        dataset = (
            ray.data.read_parquet(files, file_extensions=None)
            .filter(expr=col(BUCKET_COLUMN).is_in(wanted))
            .groupby(BUCKET_COLUMN, num_partitions=partitions)
            .map_groups(
                functools.partial(reduce_group, fn=fn, schema=schema),
                batch_format="pyarrow",
                concurrency=self.workers if self.capped else None,
            )
        )
        with original_errors():
            for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                table = cast(pa.Table, batch)
                buckets = table.column(BUCKET_COLUMN).to_pylist()
                blobs = table.column(RESULT_COLUMN).to_pylist()
                for bucket, blob in zip(buckets, blobs, strict=True):
                    yield int(bucket), pickle.loads(blob)

    def close(self) -> None:
        import ray

        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False


@contextlib.contextmanager
def original_errors() -> Iterator[None]:
    """A task's own exception raised as itself, not as Ray's `RayTaskError` wrapping it
    (which stays attached as the cause, with the remote traceback)."""
    from ray.exceptions import RayError, RayTaskError

    try:
        yield
    except RayTaskError as err:
        cause = err.cause
        while isinstance(cause, RayTaskError):  # a task failed inside a task
            cause = cause.cause
        if isinstance(cause, Exception) and not isinstance(cause, RayError):
            raise cause from err
        raise


def result_of(ref: Any) -> Any:
    """A finished task's result, or the exception the task raised."""
    import ray

    with original_errors():
        return ray.get(ref)
