"""Batches of token sequences and their next-token losses: shared by pretraining, grafting and training."""

from __future__ import annotations

import torch

IGNORE = -100  # label of positions the loss skips (prompt, padding)


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """(input ids, labels) pairs right-padded into input_ids, attention_mask and labels (IGNORE on padding)."""
    longest = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), longest), pad_id)
    labels = torch.full((len(examples), longest), IGNORE)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, (ids, targets) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(targets)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token loss and counted target tokens per row."""
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return losses.sum(1), (targets != IGNORE).sum(1)
