"""Memory: ETPO's rollout buffer and model copies vs the official code's layout.

    python benchmarks/bench_memory.py [--action-len 256] [--num-actions 8] [--vocab 32016]
                                      [--meta-dtype bfloat16] [--skip-7b]

(a) Rollout buffer, bytes per env action step. Ours: ``Batch.nbytes()`` of a real-layout
:class:`etpo_agents.rollout.Batch` (the env's real prompt, ``--num-actions`` actions of ``--action-len`` tokens with
token ids drawn from ``--vocab``, packed by the collector's own code, bootstrap segment included), divided by the
number of actions. Official layout: three float32 arrays of tokens x vocabulary per action step (3 * L * V * 4 bytes;
the official code stores the policy's, the reference's and the critic's per-token distributions). Goal >= 1000x.

(b) Model memory, parameter + buffer bytes (``sum(t.numel() * t.element_size())`` over the module's parameters and
buffers) of the objects :class:`etpo_agents.policy.Policy` actually builds for ETPO (``q_head=True``):

* LoRA (``use_lora=True``): one base model with LoRA adapters; π_ref = the same base with adapters disabled (no
  copy); the dueling soft-Q heads (advantage: hidden x vocab, value: hidden x 1; float32) and their Polyak targets;
* full fine-tuning (``use_lora=False``, the default for the embedded model): the model, a frozen deep copy of it
  as π_ref, and the four heads;

vs the official code: four full model copies (policy, reference, critic, target critic; its critic is an LM whose
logits are Q). Sizes: the embedded model (or a random Llama of its size when it is not installed), a random
Llama-shaped ~0.5B model and a CodeLlama-7B-shaped model (vocab 32,016), both instantiated on the ``meta`` device
(shapes and dtypes only, nothing allocated). Optimiser (Adam) state, 2 x the trainable float32 bytes, is listed
separately (official: policy and critic trained in full; ours: whatever requires grad, in float32);
activations are not counted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from _bench_common import (
    MODEL_SIZES,
    ModelSize,
    env_prompt,
    env_tokenizer,
    llama_config,
    load_model,
    make_batch,
    markdown_table,
)

META_SHAPES: dict[str, dict[str, int]] = {
    "random Llama ~0.5B": {"hidden": 1024, "layers": 24, "heads": 16, "intermediate": 4096},
    "CodeLlama-7B shape": {"hidden": 4096, "layers": 32, "heads": 32, "intermediate": 11008},
}
"""Llama shapes instantiated on the meta device (vocabulary: ``--vocab``)."""

MIB = 2**20


def tensor_bytes(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Bytes of a module's parameters (deduplicated by ``nn.Module``) and buffers; ``trainable_only``: grad params."""
    params = [p for p in module.parameters() if p.requires_grad or not trainable_only]
    buffers = [] if trainable_only else list(module.buffers())
    return sum(t.numel() * t.element_size() for t in params + buffers)


def buffer_report(action_len: int, num_actions: int, vocab: int) -> tuple[list[list[str]], float]:
    """Rows of the rollout-buffer table and the ratio official / ours at ``vocab``."""
    tokenizer = env_tokenizer()
    prompt = env_prompt()
    batch = make_batch(prompt, num_actions, action_len, vocab, tokenizer.pad_token_id)
    ours = batch.nbytes() / batch.num_actions
    segment_fields = sum(
        t.numel() * t.element_size() for k, t in vars(batch).items() if isinstance(t, torch.Tensor) and
        not k.startswith("row_")
    )  # fmt: skip
    row_fields = batch.nbytes() - segment_fields
    official = 3 * action_len * vocab * 4
    rows = [
        ["ours: `Batch.nbytes()` / actions", f"{ours:,.0f}", f"{ours / 1024:.1f} KiB", "1x"],
        ["  of which segment fields (prompt + action ids, mask, per-action scalars)",
         f"{segment_fields / batch.num_actions:,.0f}", "", ""],
        ["  of which row fields (one row per sampled token)", f"{row_fields / batch.num_actions:,.0f}", "", ""],
        [f"official: 3 x {action_len} tokens x {vocab:,} vocab x 4 B", f"{official:,}", f"{official / MIB:.1f} MiB",
         f"**{official / ours:,.0f}x**"],
    ]  # fmt: skip
    return rows, official / ours


def policy_breakdown(policy: Any) -> dict[str, int]:
    """Bytes of each part of an ETPO :class:`~etpo_agents.policy.Policy`."""
    q_heads = (policy.q_head, policy.q_value_head, policy.target_q_head, policy.target_q_value_head)
    heads = sum(tensor_bytes(head) for head in q_heads if head is not None)  # V heads: None when "linear"
    reference = tensor_bytes(policy.ref_model) if policy.ref_model is not None else 0
    adapters = sum(t.numel() * t.element_size() for n, t in policy.model.named_parameters() if "lora_" in n)
    return {
        "total": tensor_bytes(policy),
        "model (+ adapters)": tensor_bytes(policy.model),
        "adapters": adapters,
        "reference copy": reference,
        "soft-Q heads + targets": heads,
        "adam": 2 * 4 * sum(p.numel() for p in policy.parameters() if p.requires_grad),
    }


def model_rows(name: str, model: Any, tokenizer: Any, device: str) -> list[list[str]]:
    """Table rows for one base model: official four copies vs our LoRA and full fine-tuning ETPO policies."""
    import copy

    from etpo_agents.policy import Policy

    base = tensor_bytes(model)
    official = 4 * base
    params = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    first = f"{name}, {dtype}" if "params" in name else f"{name} ({params / 1e6:,.1f} M params, {dtype})"
    official_adam = 2 * 2 * 4 * params  # Adam's two float32 moments for the trained policy and critic copies
    rows = [
        [first, "official: 4 full copies", _mib(official), _mib(base), "-", _mib(base),
         _mib(2 * base) + " (2 LM copies)", _mib(official_adam), "1x", "1x"]
    ]  # fmt: skip
    for mode, use_lora in (("ours, LoRA", True), ("ours, full fine-tuning", False)):
        with torch.device(device):
            policy = Policy(copy.deepcopy(model), tokenizer, q_head=True, use_lora=use_lora, device=device)
        parts = policy_breakdown(policy)
        rows.append([
            "", mode, _mib(parts["total"]), _mib(parts["model (+ adapters)"]), _mib(parts["adapters"]),
            _mib(parts["reference copy"]), _mib(parts["soft-Q heads + targets"]), _mib(parts["adam"]),
            f"**{official / parts['total']:.2f}x**",
            f"{(official + official_adam) / (parts['total'] + parts['adam']):.2f}x",
        ])  # fmt: skip
        del policy
    return rows


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / MIB:,.1f} MiB"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--action-len", type=int, default=256, help="tokens per action (rollout buffer)")
    parser.add_argument("--num-actions", type=int, default=8, help="actions in the measured batch")
    parser.add_argument("--vocab", type=int, default=32016, help="vocabulary (CodeLlama: 32016)")
    parser.add_argument(
        "--model-size",
        choices=sorted(MODEL_SIZES),
        default="small",
        help="real-allocation model: small = the embedded model (or a random Llama of its size)",
    )
    parser.add_argument("--meta-dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                        help="weights dtype of the meta-device models")  # fmt: skip
    parser.add_argument("--skip-meta", action="store_true", help="only the real-allocation model")
    parser.add_argument("--skip-7b", action="store_true", help="skip the CodeLlama-7B-shaped model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown report."""
    args = parse_args(argv)
    buffer_rows, ratio = buffer_report(args.action_len, args.num_actions, args.vocab)
    lines = [
        f"(a) Rollout buffer per env action step ({args.num_actions} actions of {args.action_len} tokens, vocab "
        f"{args.vocab:,}; our bytes do not depend on the vocabulary). Goal >= 1000x: "
        f"{'met' if ratio >= 1000 else 'NOT met'}.",
        "",
        markdown_table(["layout", "bytes / action step", "", "official / ours"], buffer_rows),
        "",
        "(b) Model memory, parameters + buffers (ETPO: policy, reference, critic, target critic). Adam state = 2 x "
        "the trainable float32 bytes.",
        "",
    ]
    model, tokenizer, description = load_model(args.model_size)
    rows = model_rows(description, model, tokenizer, "cpu")
    if not args.skip_meta:
        dtype = getattr(torch, args.meta_dtype)
        from transformers import LlamaForCausalLM

        for name, shape in META_SHAPES.items():
            if args.skip_7b and "7B" in name:
                continue
            config = llama_config(ModelSize(vocab=args.vocab, **shape), tokenizer)
            with torch.device("meta"):
                meta_model = LlamaForCausalLM(config).to(dtype)
            rows += model_rows(f"{name}, vocab {args.vocab:,}, meta device", meta_model, tokenizer, "meta")
    lines.append(
        markdown_table(
            [
                "model",
                "layout",
                "total",
                "model (+ LoRA)",
                "LoRA adapters",
                "reference copy",
                "soft-Q (A + V) + target heads",
                "Adam state",
                "official / ours",
                "official / ours incl. Adam",
            ],
            rows,
        )  # fmt: skip
    )
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
