"""Executors: where the parts of a stage run. `local` (a process pool) or `ray` (a cluster).

A stage is written once, as module-level functions over parts; an executor only decides
where each call runs. Executors know nothing of pairs or stages: they run tasks
(`Executor.map`) and keyed reductions over an `Exchange` (`Executor.reduce`).
"""

from executors.base import Exchange, Executor, make_executor

__all__ = ["Exchange", "Executor", "make_executor"]
