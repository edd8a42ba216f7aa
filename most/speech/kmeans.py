"""K-means for speech units (torch): k-means++ initialisation, mini-batch updates, dead-cluster reseeding.

Mini-batch k-means (Sculley 2010): each centre moves towards the mean of the frames assigned to it
with a per-centre step size 1/count, so a pass costs one batch, not the whole sample; a centre that
no frame chose for `reseed_after` batches is moved onto a frame far from its centre (reseeded), so
no cluster stays dead. Everything draws from one seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def nearest(frames: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest centroid, squared distance) for every frame."""
    labels, distances = [], []
    norms = (centroids * centroids).sum(1)
    for start in range(0, len(frames), chunk):
        part = frames[start : start + chunk]
        d2 = (part * part).sum(1, keepdim=True) - 2 * part @ centroids.T + norms
        best, index = d2.min(1)
        labels.append(index)
        distances.append(best.clamp(min=0))
    if not labels:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(labels), torch.cat(distances)


def kmeans_plus_plus(frames: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    if len(frames) < k:
        raise ValueError(f"k-means needs at least k={k} frames, got {len(frames)}")
    centroids = frames[torch.randint(len(frames), (1,), generator=generator)]
    d2 = ((frames - centroids[0]) ** 2).sum(1)
    for _ in range(k - 1):
        weights = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / len(d2))
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, frames[pick]])
        d2 = torch.minimum(d2, ((frames - frames[pick]) ** 2).sum(1))
    return centroids


@dataclass
class KMeansResult:
    centroids: torch.Tensor
    inertia: float  # mean squared distance of the sample to its centroid
    usage: torch.Tensor  # frames of the sample per cluster
    reseeded: int  # dead clusters moved during fitting


def fit(frames: torch.Tensor, k: int, steps: int, batch_size: int, seed: int, init_frames: int, reseed_after: int = 20) -> KMeansResult:
    generator = torch.Generator().manual_seed(seed)
    frames = frames.float()
    init = frames[torch.randperm(len(frames), generator=generator)[: max(init_frames, k)]]
    centroids = kmeans_plus_plus(init, k, generator)
    counts = torch.zeros(k)
    idle = torch.zeros(k, dtype=torch.long)
    reseeded = 0
    for _ in range(steps):
        batch = frames[torch.randint(len(frames), (batch_size,), generator=generator)]
        labels, d2 = nearest(batch, centroids)
        hits = torch.bincount(labels, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, labels, batch)
        counts += hits
        moved = hits > 0
        rate = (hits[moved] / counts[moved])[:, None]
        centroids[moved] = (1 - rate) * centroids[moved] + rate * (sums[moved] / hits[moved][:, None])
        idle = torch.where(moved, torch.zeros_like(idle), idle + 1)
        dead = torch.nonzero(idle >= reseed_after).flatten()
        if len(dead):
            # move each dead centre onto one of the batch's worst-fitted frames
            far = torch.multinomial(d2 / d2.sum(), len(dead), replacement=len(dead) > len(d2), generator=generator)
            centroids[dead] = batch[far]
            counts[dead] = 0
            idle[dead] = 0
            reseeded += len(dead)
    labels, d2 = nearest(frames, centroids)
    return KMeansResult(centroids, float(d2.mean()), torch.bincount(labels, minlength=k), reseeded)
