"""The embedded default's base LM, a small DeepSeek-V2-shaped MoE text LM (built by the
`pretrain_base` stage, `most.stages.pretrain_base`): its byte-level BPE tokenizer, its config, and
held-out perplexity.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from most.data import manifest
from most.model.sequences import collate, row_losses

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def base_config(settings: dict, tokenizer):
    from transformers import DeepseekV2Config

    return DeepseekV2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        moe_intermediate_size=settings["moe_intermediate_size"],
        num_hidden_layers=settings["num_layers"],
        num_attention_heads=settings["num_heads"],
        kv_lora_rank=settings["kv_lora_rank"],
        q_lora_rank=None,
        qk_nope_head_dim=settings["qk_nope_head_dim"],
        qk_rope_head_dim=settings["qk_rope_head_dim"],
        v_head_dim=settings["v_head_dim"],
        n_routed_experts=settings["num_routed_experts"],
        num_experts_per_tok=settings["num_experts_per_token"],
        n_shared_experts=settings["num_shared_experts"],
        first_k_dense_replace=settings["first_dense_layers"],
        max_position_embeddings=settings["max_position_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id] for text in texts]


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int = 64, vocab: int | None = None) -> tuple[float, int]:
    """exp(mean next-token loss) over the tokens of `texts` (BOS excluded, EOS included); with `vocab`,
    the softmax covers only the first `vocab` ids."""
    model.eval()
    total, count = 0.0, 0
    sequences = encode(tokenizer, texts)
    for start in range(0, len(sequences), batch_size):
        batch = collate([(s, s) for s in sequences[start : start + batch_size]], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., :vocab]
        sums, counts = row_losses(logits, batch["labels"])
        total += float(sums.sum())
        count += int(counts.sum())
    return math.exp(total / max(count, 1)), count


def held_out_texts(prepare: Path, limit: int) -> list[str]:
    """Dev transcripts: sentences the training text never contains (checked by prepare)."""
    return [row["text"] for row in manifest.rows(prepare, ["dev"], tasks=["asr"])][:limit]
