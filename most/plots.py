"""Figures written as PNG artifacts (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def expert_load_heatmap(load: list, path: str | Path, title: str = "") -> Path:
    """Per modality, per MoE layer: each routed expert's share of that modality's routed tokens.

    `load` is [moe layer][text, audio][expert] token copies (`expert_load.json`). Under MAMoE routing
    the text panel is zero on audio experts and the other way round.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
