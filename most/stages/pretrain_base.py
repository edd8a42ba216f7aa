"""Stage `pretrain_base`: the embedded default's base LM, a small DeepSeek-V2-shaped MoE text LM.

A byte-level BPE tokenizer (`tokenizers`) and a `DeepseekV2ForCausalLM` trained from scratch on the
training text, saved as a standard transformers checkpoint (safetensors + tokenizer.json) that `graft`
loads exactly as it loads DeepSeek-V2-Lite. Held-out perplexity is measured on the dev transcripts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from most.data import manifest
from most.io import atomic_directory, write_json
from most.model.base_lm import base_config, encode, held_out_texts, perplexity, train_tokenizer
from most.model.sequences import collate
from most.rng import rng_for
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    from transformers import DeepseekV2ForCausalLM, get_cosine_schedule_with_warmup

    settings, seed = cfg["base_lm"], cfg["seed"]
    torch.set_num_threads(max(1, threads))
    texts = manifest.training_texts(inputs["prepare"])
    held_out = held_out_texts(inputs["prepare"], settings["eval_sentences"])
    if not texts or not held_out:
        raise ValueError(f"pretrain_base: {inputs['prepare']} has no training text or no dev transcripts")
    tokenizer = train_tokenizer(texts, settings["tokenizer_vocab_size"])
    sequences = [s[: settings["max_position_embeddings"]] for s in encode(tokenizer, texts)]
    torch.manual_seed(seed)
    model = DeepseekV2ForCausalLM(base_config(settings, tokenizer))
    parameters = sum(p.numel() for p in model.parameters())
    log.info(
        "pretrain_base: %d texts, %d tokens, vocab %d, %.2f M parameters",
        len(texts),
        sum(map(len, sequences)),
        len(tokenizer),
        parameters / 1e6,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"], weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, settings["steps"] // 20), settings["steps"])
    order = list(range(len(sequences)))
    rng = rng_for(seed, "pretrain_base-batches")
    history, started, position = [], time.time(), len(order)
    for step in range(1, settings["steps"] + 1):
        if position + settings["batch_size"] > len(order):
            rng.shuffle(order)
            position = 0
        batch = collate([(sequences[i], sequences[i]) for i in order[position : position + settings["batch_size"]]], tokenizer.pad_token_id)
        position += settings["batch_size"]
        model.train()
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step == 1 or step % 25 == 0 or step == settings["steps"]:
            history.append((step, {"loss": loss.item()}))
        if step % 100 == 0:
            log.info("pretrain_base: step %d/%d loss %.3f (%.0f s)", step, settings["steps"], loss.item(), time.time() - started)
    seconds = time.time() - started
    held_out_ppl, tokens = perplexity(model, tokenizer, held_out)
    report = {
        "parameters": parameters,
        "vocab_size": len(tokenizer),
        "training_texts": len(texts),
        "steps": settings["steps"],
        "loss_start": history[0][1]["loss"],
        "loss_end": history[-1][1]["loss"],
        "held_out_perplexity": held_out_ppl,
        "held_out_tokens": tokens,
    }
    log.info("pretrain_base: held-out perplexity %.2f over %d tokens; %.0f s", held_out_ppl, tokens, seconds)
    with atomic_directory(outputs["base_lm"]) as out:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json(report, out / "pretrain_report.json")
    metrics = {k: v for k, v in report.items() if isinstance(v, int | float)} | {"seconds": seconds}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["base_lm"]) / "pretrain_report.json"], history=history)
