"""Train etpo-tiny-coder, the project's embedded default policy, from scratch on the generated corpus.

    python -m etpo_agents.tiny_coder.train                      # writes the shipped model (time: MODEL_CARD.md)
    python -m etpo_agents.tiny_coder.train --train-tokenizer    # also regenerate etpo_gym/assets/tokenizer.json

Steps: generate ``--num-examples`` (prompt, body) pairs with :mod:`etpo_agents.tiny_coder.corpus`; tokenize them the
way the env does -- ``tokenizer(prompt)["input_ids"]`` (with ``<s>``, left-truncated to the env's prompt room of
``max_obs_tokens - max_action_tokens`` = 768 tokens) followed by ``tokenizer(body, add_special_tokens=False)``
and ``</s>``, tokenized separately and concatenated, never ``tokenizer(prompt + body)``; train a Llama-style
causal LM with the next-token loss on the body and ``</s>`` tokens only; save safetensors weights, config,
generation config and tokenizer into ``--output-dir``.

Everything is seeded (``--seed``); with ``torch.set_num_threads(--num-threads)`` a run on the same machine
reproduces the same weights up to floating-point non-determinism of threaded kernels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from etpo_agents.tiny_coder import corpus
from etpo_agents.tiny_coder.tokenizer import to_transformers, train_tokenizer

ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "etpo-tiny-coder")
"""Where the shipped model lives (``agents/assets/etpo-tiny-coder``)."""

ENV_TOKENIZER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etpo_gym", "assets", "tokenizer.json"
)
"""The env's default tokenizer file, shared with the model."""

PROMPT_ROOM = 1024 - 256
"""The env keeps the last ``max_obs_tokens - max_action_tokens`` prompt tokens (defaults 1024 and 256)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus, the init and the batch order")
    parser.add_argument("--num-examples", type=int, default=24_000, help="generated (prompt, body) pairs")
    parser.add_argument("--num-steps", type=int, default=2_200, help="optimizer steps (fixed, for a bounded time)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step, bucketed by length")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up, then cosine decay to 10%%")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--intermediate-size", type=int, default=688)
    parser.add_argument("--num-threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast on CPU (about 2x faster with AMX/AVX512-BF16); fp32 weights",
    )
    parser.add_argument(
        "--train-tokenizer", action="store_true", help=f"retrain the BPE tokenizer and overwrite {ENV_TOKENIZER}"
    )
    parser.add_argument(
        "--tokenizer-examples", type=int, default=3_000, help="corpus examples (seed + 1) the tokenizer is trained on"
    )
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--output-dir", default=ASSET_DIR)
    return parser.parse_args(argv)


def build_tokenizer(args: argparse.Namespace):
    """The shared tokenizer: retrained on a separate corpus sample (seed + 1) or loaded from the env's file."""
    if args.train_tokenizer:
        texts = [e.prompt + e.body for e in corpus.generate(args.tokenizer_examples, seed=args.seed + 1)]
        train_tokenizer(texts, args.vocab_size).save(ENV_TOKENIZER)
    return to_transformers(ENV_TOKENIZER)


def tokenize(examples: list[corpus.Example], tokenizer) -> list[tuple[np.ndarray, int]]:
    """``(ids, num_prompt_tokens)`` per example: env-style prompt ids, then body ids and ``</s>``."""
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    bodies = tokenizer([e.body for e in examples], add_special_tokens=False)["input_ids"]
    sequences = []
    for prompt, body in zip(prompts, bodies, strict=True):
        prompt = prompt[-PROMPT_ROOM:]
        sequences.append((np.array(prompt + body + [tokenizer.eos_token_id], dtype=np.int64), len(prompt)))
    return sequences


def batches(sequences: list[tuple[np.ndarray, int]], batch_size: int, rng: np.random.Generator, pad_id: int):
    """Endless shuffled batches; sequences of similar length are batched together to waste little padding.

    Yields:
        ``input_ids`` (B, T) int64, ``attention_mask`` (B, T) int64, ``labels`` (B, T) int64 with -100 on prompt
        and padding, so the loss covers the body and ``</s>`` only.
    """
    while True:
        order = rng.permutation(len(sequences))
        chunk = 64 * batch_size
        groups = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: len(sequences[i][0]))
            groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        for index in rng.permutation(len(groups)):
            group = [sequences[i] for i in groups[index]]
            length = max(len(ids) for ids, _ in group)
            input_ids = torch.full((len(group), length), pad_id, dtype=torch.long)  # (B, T)
            labels = torch.full((len(group), length), -100, dtype=torch.long)  # (B, T)
            attention_mask = torch.zeros((len(group), length), dtype=torch.long)  # (B, T)
            for row, (ids, num_prompt) in enumerate(group):
                input_ids[row, : len(ids)] = torch.from_numpy(ids)
                labels[row, num_prompt : len(ids)] = torch.from_numpy(ids[num_prompt:])
                attention_mask[row, : len(ids)] = 1
            yield input_ids, attention_mask, labels


def build_model(args: argparse.Namespace, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        num_key_value_heads=args.num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup_steps:
        return args.learning_rate * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.num_steps - args.warmup_steps)
    return args.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def save(model, tokenizer, args: argparse.Namespace, summary: dict) -> None:
    """Weights (safetensors), config, generation config (the env's sampling defaults) and tokenizer."""
    from transformers import GenerationConfig

    os.makedirs(args.output_dir, exist_ok=True)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(args.output_dir, safe_serialization=True)
    tokenizer.save_pretrained(args.output_dir)
    # transformers 5 writes its own backend class name; the generic class also loads with transformers 4.x.
    config_path = os.path.join(args.output_dir, "tokenizer_config.json")
    with open(config_path) as handle:
        tokenizer_config = json.load(handle)
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(config_path, "w") as handle:
        json.dump(tokenizer_config, handle, indent=2)
    with open(os.path.join(args.output_dir, "training_summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)


def ensure_passive_openmp(module: str, argv: list[str] | None) -> None:
    """Re-run ``python -m module argv`` with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set.

    With more busy processes than cores (a shared CI box), OpenMP's spin-waiting barrier made 2-thread training
    about 10x slower in our measurements (4.3 s instead of 0.45 s per step); passive waiting fixes it. OpenMP reads
    the variable once when torch loads, which ``import agents`` already did, hence the re-exec.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        arguments = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, "-m", module, *arguments])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_passive_openmp("etpo_agents.tiny_coder.train", argv)
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    start = time.time()
    tokenizer = build_tokenizer(args)
    examples = list(tqdm(corpus.generate(args.num_examples, seed=args.seed), total=args.num_examples, desc="corpus"))
    sequences = tokenize(examples, tokenizer)
    num_body_tokens = sum(len(ids) - n for ids, n in sequences)
    print(
        f"corpus: {len(sequences)} examples, {sum(len(ids) for ids, _ in sequences)} tokens "
        f"({num_body_tokens} trained), {time.time() - start:.0f} s"
    )

    model = build_model(args, tokenizer)
    num_params = sum(p.numel() for p in model.parameters())
    print(f"model: {num_params / 1e6:.2f} M parameters")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(0.9, 0.95),
    )
    data = batches(sequences, args.batch_size, np.random.default_rng(args.seed), tokenizer.pad_token_id)
    model.train()
    progress = tqdm(range(args.num_steps), desc="train")
    smoothed = None
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        input_ids, attention_mask, labels = next(data)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        progress.set_postfix(loss=f"{smoothed:.3f}", lr=f"{group['lr']:.1e}")

    model.eval()
    summary = {
        "args": {k: v for k, v in vars(args).items() if k != "output_dir"},
        "num_parameters": num_params,
        "final_loss_ema": smoothed,
        "num_corpus_tokens": int(sum(len(ids) for ids, _ in sequences)),
        "wall_time_s": round(time.time() - start, 1),
    }
    save(model, tokenizer, args, summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
