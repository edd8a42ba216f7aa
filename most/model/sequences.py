"""Batches of token sequences and their next-token losses: shared by pretraining, grafting and training."""

from __future__ import annotations

import torch

IGNORE = -100  # label of positions the loss skips (prompt, padding)


def collate(examples: list[tuple], pad_id: int) -> dict[str, torch.Tensor]:
    """(input ids, labels[, speech frames]) right-padded into input_ids, attention_mask and labels
    (IGNORE on padding); the speech frames of every example, in order, as `speech_features`
    (continuous speech input: the model fills its speech-frame positions row by row)."""
    longest = max(len(example[0]) for example in examples)
    input_ids = torch.full((len(examples), longest), pad_id)
    labels = torch.full((len(examples), longest), IGNORE)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    speech = [example[2] for example in examples if len(example) > 2 and example[2] is not None]
    for row, (ids, targets, *_) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(targets)
        mask[row, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    if speech:
        batch["speech_features"] = torch.cat([frames.float() for frames in speech])
    return batch


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token loss and counted target tokens per row."""
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return losses.sum(1), (targets != IGNORE).sum(1)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the model's forward takes from a collated batch (labels stay with the caller's loss)."""
    return {key: value for key, value in batch.items() if key in ("input_ids", "attention_mask", "speech_features")}
