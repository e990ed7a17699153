"""Wall-clock timing of codec stages, synchronising the device so GPU times are real."""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class StageTimer:
    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.stages: dict[str, float] = {}

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def stage(self, name: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def now(self) -> float:
        self._sync()
        return time.perf_counter()
