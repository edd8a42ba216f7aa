"""Task mixing: batches drawn by per-stage task ratios, built to a token budget with length bucketing.

Each batch: draw a pool of examples (task by ratio, then an example of that task, every task's
examples in a reshuffled cycle), sort the pool by length, and cut it into batches whose padded size
(longest x count) stays within `tokens_per_batch`; the batches of a pool are served in random order.
The whole state is a `random.Random` state plus positions: `state_dict()` / `load_state_dict()` make a
resumed run draw exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random


class MixedBatches:
    def __init__(self, lengths: dict[str, list[int]], ratios: dict[str, float], tokens_per_batch: int, seed: int, pool_batches: int = 16):
        missing = [task for task, ratio in ratios.items() if ratio > 0 and not lengths.get(task)]
        if missing:
            raise ValueError(f"mix: no training examples for task(s) {missing}")
        self.tasks = [task for task, ratio in ratios.items() if ratio > 0]
        total = sum(ratios[task] for task in self.tasks)
        self.weights = [ratios[task] / total for task in self.tasks]
        self.lengths = lengths
        self.tokens_per_batch = tokens_per_batch
        self.pool_batches = pool_batches
        self.rng = random.Random(seed)
        self.cycles: dict[str, list[int]] = {task: [] for task in self.tasks}
        self.pending: list[list[tuple[str, int]]] = []

    def draw_task(self) -> str:
        return self.rng.choices(self.tasks, self.weights)[0]

    def _next_example(self, task: str) -> tuple[str, int]:
        if not self.cycles[task]:
            order = list(range(len(self.lengths[task])))
            self.rng.shuffle(order)
            self.cycles[task] = order
        return task, self.cycles[task].pop()

    def _refill(self) -> None:
        pool, budget = [], self.tokens_per_batch * self.pool_batches
        while sum(self.lengths[t][i] for t, i in pool) < budget:
            pool.append(self._next_example(self.draw_task()))
        pool.sort(key=lambda item: self.lengths[item[0]][item[1]])
        batches, current, longest = [], [], 0
        for item in pool:
            length = self.lengths[item[0]][item[1]]
            if current and max(longest, length) * (len(current) + 1) > self.tokens_per_batch:
                batches.append(current)
                current, longest = [], 0
            current.append(item)
            longest = max(longest, length)
        batches.append(current)
        self.rng.shuffle(batches)
        self.pending = batches

    def next_batch(self) -> list[tuple[str, int]]:
        """(task, example index) pairs of the next batch."""
        if not self.pending:
            self._refill()
        return self.pending.pop()

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "cycles": self.cycles, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.cycles = {task: list(order) for task, order in state["cycles"].items()}
        self.pending = [[(task, index) for task, index in batch] for batch in state["pending"]]
