"""Figures written as PNG artifacts (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def expert_load_heatmap(load: list, path: str | Path, title: str = "") -> Path:
    """Per modality, per MoE layer: each routed expert's share of that modality's routed tokens.

    `load` is [moe layer][text, audio][expert] token copies (`expert_load.json`). Under MAMoE routing
    the text panel is zero on audio experts and the other way round.
    """
    plt = _pyplot()
    counts = np.asarray(load, dtype=float)  # layers x 2 x experts
    shares = counts / np.maximum(counts.sum(axis=2, keepdims=True), 1)
    size = (2 + 0.45 * counts.shape[2] * 2, 2 + 0.5 * counts.shape[0])
    figure, axes = plt.subplots(1, 2, figsize=size, sharey=True, layout="constrained")
    for axis, modality, name in zip(axes, range(2), ("text tokens", "audio tokens"), strict=True):
        image = axis.imshow(shares[:, modality], aspect="auto", cmap="viridis", vmin=0, vmax=max(float(shares.max()), 1e-9))
        axis.set_title(name)
        axis.set_xlabel("routed expert")
        axis.set_xticks(range(counts.shape[2]))
        axis.set_yticks(range(counts.shape[0]))
    axes[0].set_ylabel("MoE layer")
    figure.colorbar(image, ax=list(axes), label="share of the modality's routed tokens")
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(histories: dict[str, list[dict]], path: str | Path) -> Path:
    """One panel per training stage: each task's training loss (and dev loss, dashed) over steps.
    `histories` maps a stage to its `history.json` rows ({step, loss.<task>, dev_loss.<task>, ...})."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 4), layout="constrained", squeeze=False)
    for axis, (stage, rows) in zip(axes[0], histories.items()):
        for prefix, style in (("loss.", "-"), ("dev_loss.", "--")):
            tasks = sorted({key[len(prefix) :] for row in rows for key in row if key.startswith(prefix)})
            for task in tasks:
                points = [(row["step"], row[prefix + task]) for row in rows if prefix + task in row]
                axis.plot(*zip(*points), style, label=f"{'dev ' if prefix == 'dev_loss.' else ''}{task}", linewidth=1)
        axis.set_title(stage)
        axis.set_xlabel("step")
        axis.set_ylabel("next-token loss (nats)")
        axis.legend(fontsize=7)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def metric_bars(bars: list[dict], path: str | Path) -> Path:
    """Horizontal bars with 95% CIs: `bars` rows {label, value, ci_low, ci_high, reference (optional)};
    a reference (chance, resynthesis ceiling) is drawn as a tick."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.6 * len(bars) + 1.2), layout="constrained")
    positions = np.arange(len(bars))[::-1]
    values = [bar["value"] for bar in bars]
    errors = [[bar["value"] - bar["ci_low"] for bar in bars], [bar["ci_high"] - bar["value"] for bar in bars]]
    axis.barh(positions, values, xerr=errors, color="#4c72b0", capsize=4)
    for position, bar in zip(positions, bars):
        if bar.get("reference") is not None:
            axis.plot([bar["reference"]] * 2, [position - 0.4, position + 0.4], color="#c44e52", linewidth=2)
    axis.set_yticks(positions, [bar["label"] for bar in bars])
    axis.set_xlabel("fraction (bars: 95% bootstrap CI; red tick: chance or resynthesis ceiling)")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
