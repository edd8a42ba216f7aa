"""A training stage's per-step history, kept where a kill cannot lose it and shown while it grows.

Every finished step's metrics are appended to `history.jsonl` beside the checkpoints (the main process
writes it). A resume keeps the steps up to the checkpoint it resumes from (the later ones run again)
and sends them to its own MLflow run first, so the run that finishes holds every step once, in order,
with the time each step finished. While training runs, the steps go to MLflow every `log_every` steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from most import tracking

FILE = "history.jsonl"
LOSS_CURVE = "loss_curve.json"  # beside history.json in the stage's output: the stage's DVC plot


def loss_curve(history: list[dict]) -> list[dict]:
    """Step, loss and learning rate of every step: the fields every step has (DVC plots read only
    files whose records all have the same fields, and a step logs the losses of its own tasks only)."""
    return [{"step": entry["step"], "loss": entry["loss"], "lr": entry["lr"]} for entry in history]


class StepHistory:
    def __init__(self, folder: Path, resumed_step: int, log_every: int) -> None:
        self.path = Path(folder) / FILE
        self.log_every = max(1, log_every)
        self.entries = [entry for entry in self._read() if entry["step"] <= resumed_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(entry) + "\n" for entry in self.entries))
        self.unlogged = list(self.entries)
        if self.unlogged:  # a resumed job's MLflow run shows the steps before it at once
            self.flush()

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # the line a kill cut short: its step runs again
                break
        return entries

    def append(self, step: int, metrics: dict, last: bool = False) -> None:
        entry = {"step": step, "time_ms": int(time.time() * 1000), "metrics": metrics}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
        self.entries.append(entry)
        self.unlogged.append(entry)
        if last or step % self.log_every == 0:
            self.flush()

    def flush(self) -> None:
        tracking.log_training_steps([(entry["step"], entry["metrics"], entry["time_ms"]) for entry in self.unlogged])
        self.unlogged = []

    def steps(self) -> list[dict]:
        """The history as `history.json` holds it: one {"step", metric: value...} per step."""
        return [{"step": entry["step"], **entry["metrics"]} for entry in self.entries]
