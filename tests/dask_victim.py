"""A `dask worker --preload` for the worker-kill test: the worker kills its own process
(SIGKILL, as the OOM killer or a lost machine would) as soon as it has finished its first task
whose key holds CD4ML_KILL_AFTER, that is, in the middle of a stage."""

from __future__ import annotations

import os
import signal
from typing import Any

from distributed import WorkerPlugin


class DieMidStage(WorkerPlugin):
    def __init__(self, trigger: str) -> None:
        self.trigger = trigger

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "memory" and self.trigger in str(key):
            os.kill(os.getpid(), signal.SIGKILL)


async def dask_setup(worker: Any) -> None:
    await worker.plugin_add(DieMidStage(os.environ["CD4ML_KILL_AFTER"]), name="die-mid-stage")
