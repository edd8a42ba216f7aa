"""The token layout: speech units and markers appended to the base tokenizer.

Units are `<|u0|>` ... `<|u{k-1}|>`, contiguous ids. Markers: begin/end of speech, the speech-frame
placeholder of continuous input, and one tag per task. `<|begin_of_speech|>` has modality audio (its
hidden state predicts the first unit), and so has `<|speech_frame|>` (an encoder frame); every other
marker is text. New embedding and output rows start at the mean of the base model's rows plus seeded noise;
with `model.unit_embedding_init: centroids` the units' rows start from their k-means centroids instead.
"""

from __future__ import annotations

import torch
from tokenizers import AddedToken

BEGIN_SPEECH, END_SPEECH = "<|begin_of_speech|>", "<|end_of_speech|>"
SPEECH_FRAME = "<|speech_frame|>"  # continuous speech input: one per encoder frame, its embedding replaced by the projected frame
TASKS = ("asr", "tts", "text_lm", "spoken_instruction", "text_instruction", "spoken_qa", "text_qa", "speech_lm")


def unit_token(unit: int) -> str:
    return f"<|u{unit}|>"


def task_tag(task: str) -> str:
    return f"<|{task}|>"


def extend_tokenizer(tokenizer, units: int) -> dict:
    """Add the unit tokens and markers; return the layout (ids) recorded in the model config."""
    base_size = len(tokenizer)
    tokenizer.add_tokens([AddedToken(unit_token(u), normalized=False, special=False) for u in range(units)])
    markers = [BEGIN_SPEECH, END_SPEECH, SPEECH_FRAME, *(task_tag(t) for t in TASKS)]
    tokenizer.add_special_tokens({"additional_special_tokens": markers})
    ids = tokenizer.convert_tokens_to_ids([unit_token(u) for u in range(units)])
    if ids != list(range(ids[0], ids[0] + units)):
        raise ValueError("token layout: the unit tokens did not get contiguous ids (does the base tokenizer already define <|u*|> tokens?)")
    special = dict(zip(markers, tokenizer.convert_tokens_to_ids(markers), strict=True))
    return {
        "base_vocab_size": base_size,
        "audio_token_start": ids[0],
        "audio_token_count": units,
        "audio_marker_ids": [special[BEGIN_SPEECH]],
        "speech_frame_id": special[SPEECH_FRAME],
        "special_tokens": special,
    }


def new_rows(old: torch.Tensor, noise: float, draws: torch.Tensor) -> torch.Tensor:
    """Rows for new tokens: the mean of the `old` rows plus `draws` (standard normal, one row per new
    token) times `noise` times the old rows' spread, in the old rows' dtype."""
    old_float = old.float()
    mean, spread = old_float.mean(0), old_float.std(0)
    return (mean + noise * spread * draws).to(old.dtype)


def centroid_rows(centroids: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Embedding or output rows for the unit tokens from their k-means centroids ([k, feature dim]): the
    centred centroids on their leading principal directions (as many as the hidden size holds; any
    dimensions beyond the centroids' rank stay 0), scaled so that the rows' mean norm is the `old`
    rows'. Units that sound alike start close, so the model need not discover it from scratch."""
    centred = centroids.double() - centroids.double().mean(0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ directions[: old.shape[1]].T
    rows = torch.zeros(len(centroids), old.shape[1], dtype=torch.float64)
    rows[:, : projected.shape[1]] = projected
    rows *= old.double().norm(dim=1).mean() / rows.norm(dim=1).mean().clamp_min(1e-12)
    return rows.to(old.dtype)
