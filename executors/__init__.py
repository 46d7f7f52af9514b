"""Executors: where the parts of a stage run. `local` (a process pool) or `ray` (a cluster).

A stage is written once, as module-level functions over parts; an executor only decides
where each call runs. Executors know nothing of pairs or stages: they run tasks
(`Executor.map`) and keyed reductions over an `Exchange` (`Executor.reduce`).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.config import EXECUTORS
from executors.base import Exchange, Executor


def make_executor(
    kind: str, workers: int, address: str = "", preload: Sequence[str] = ()
) -> Executor:
    """The executor a stage runs on: "local" (process pool) or "ray" (cluster at `address`)."""
    if kind == "local":
        from executors.local import LocalExecutor  # Ray is imported only when asked for

        return LocalExecutor(workers, preload=preload)
    if kind == "ray":
        from executors.ray import RayExecutor

        return RayExecutor(address=address or "auto", workers=workers)
    raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Exchange", "Executor", "make_executor"]
