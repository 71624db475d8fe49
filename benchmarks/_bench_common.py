"""Shared pieces of the update / linearity / memory benchmarks: models and realistic rollout batches.

Models: the embedded ``etpo-tiny-coder`` when ``agents/assets/etpo-tiny-coder/config.json`` exists, else a random
Llama of the same shape class (:data:`MODEL_SIZES`). Batches are built with the rollout collector's own packing
function (:func:`etpo_agents.rollout._to_batch`), so they have exactly the layout a real rollout produces: the env's
real first-turn prompt, ``action_len`` sampled tokens per action, a failed first turn whose successor is the
second turn, a terminated second turn, and (for an odd number of actions) a truncated action with its bootstrap
segment.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

EMBEDDED_CONFIG = os.path.join(os.path.dirname(__file__), "..", "agents", "assets", "etpo-tiny-coder", "config.json")
"""Present once the embedded model is installed."""


@dataclass(frozen=True)
class ModelSize:
    """Shape of a random Llama used when no checkpoint is available."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int | None
    """``None``: the env tokenizer's vocabulary (2048)."""


MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(hidden=32, layers=1, heads=2, intermediate=64, vocab=None),
    "small": ModelSize(hidden=256, layers=4, heads=4, intermediate=688, vocab=None),
    "large": ModelSize(hidden=512, layers=8, heads=8, intermediate=1376, vocab=32016),
}
"""``tiny``: smoke tests only. ``small``: the embedded model's class (hidden 256, 4 layers, vocab 2048).
``large``: a wider random Llama with CodeLlama's 32,016-token vocabulary."""


def add_model_size_argument(parser: Any) -> None:
    """The ``--model-size`` option shared by the benchmarks (see :data:`MODEL_SIZES`)."""
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="small",
                        help="small: the embedded model (or a random Llama of its size when not installed); "
                             "large: random Llama hidden 512, 8 layers, vocab 32016; tiny: smoke tests")  # fmt: skip


def env_tokenizer() -> Any:
    """The env's packaged tokenizer (the embedded model's tokenizer too)."""
    from etpo_gym.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def llama_config(size: ModelSize, tokenizer: Any) -> Any:
    """A ``LlamaConfig`` of ``size`` with the tokenizer's special ids."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=size.vocab or len(tokenizer), hidden_size=size.hidden, intermediate_size=size.intermediate,
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.heads,
        max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip


def load_model(size: str, seed: int = 0) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)``.

    ``size="small"`` loads the embedded model when installed (else a random Llama of its class); ``tiny`` and
    ``large`` are always random Llamas.
    """
    if size == "small" and os.path.exists(EMBEDDED_CONFIG):
        from etpo_agents import load_policy

        model, tokenizer = load_policy("etpo-tiny-coder")
        cfg = model.config
        return (
            model,
            tokenizer,
            (
                f"embedded etpo-tiny-coder (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
                f"vocab {cfg.vocab_size}, {_millions(model)} M params)"
            ),
        )
    from transformers import LlamaForCausalLM

    tokenizer = env_tokenizer()
    shape = MODEL_SIZES[size]
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(shape, tokenizer))
    missing = " (embedded model not installed)" if size == "small" else ""
    return (
        model,
        tokenizer,
        (
            f"random Llama{missing} (hidden {shape.hidden}, {shape.layers} layers, "
            f"vocab {model.config.vocab_size}, {_millions(model)} M params)"
        ),
    )


def _millions(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}"


def env_prompt(dataset: str = "pharyngitis") -> list[int]:
    """Token ids of the env's real first-turn prompt for ``dataset`` (what a rollout starts from)."""
    import gymnasium as gym

    import etpo_gym  # noqa: F401

    env = gym.make("ETPO-DataSci-v0", dataset=dataset)
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    return [int(t) for t in obs["input_ids"][obs["attention_mask"].astype(bool)]]


def make_batch(prompt: list[int], num_actions: int, action_len: int, vocab: int, pad_id: int, seed: int = 0) -> Any:
    """A rollout :class:`~etpo_agents.rollout.Batch` of ``num_actions`` actions of exactly ``action_len`` tokens.

    Episodes of two turns: turn 0 fails (reward -1, not terminated, its successor is turn 1), turn 1 succeeds
    (reward 0.8, terminated). With an odd ``num_actions`` the last action is truncated and bootstraps from a
    prompt-only segment, as the collector produces. Tokens are uniform over ``[4, vocab)`` (no special tokens),
    behaviour log-probabilities are log(1/vocab) (0-d tensors, as the collector stores them).
    """
    from etpo_agents.rollout import _Segment, _to_batch

    generator = torch.Generator().manual_seed(seed)
    segments: list[_Segment] = []
    for i in range(num_actions):
        tokens = torch.randint(4, vocab, (action_len,), generator=generator).tolist()
        segment = _Segment(env_id=0, episode_id=i // 2, turn=i % 2, prompt=list(prompt), tokens=tokens,
                           logprobs=list(torch.full((action_len,), -math.log(vocab)).unbind()),
                           dataset="pharyngitis")  # fmt: skip
        first_turn = i % 2 == 0
        segment.reward = -1.0 if first_turn else 0.8
        segment.success = not first_turn
        segment.auc = float("nan") if first_turn else 0.8
        if first_turn and i == num_actions - 1:
            segment.truncated = True
            segment.next = _Segment(env_id=0, episode_id=i // 2, turn=1, prompt=list(prompt))
        segment.terminated = not first_turn
        if not first_turn:
            segments[-1].next = segment
        segments.append(segment)
    index = {id(s): k for k, s in enumerate(segments)}
    for segment in list(segments):
        if segment.next is not None and id(segment.next) not in index:
            index[id(segment.next)] = len(segments)
            segments.append(segment.next)
    return _to_batch(segments, index, pad_id, num_actions)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
