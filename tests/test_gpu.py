"""The GPU path (issue 7): short bf16-autocast trainings on CUDA. Marked ``gpu``: skipped without a CUDA device
(``tests/conftest.py``) and deselected by default; run with ``pytest -m gpu tests/test_gpu.py -s``."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from benchmarks import bench_gpu
from etpo_agents.config import RunConfig
from etpo_agents.train import train

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("algo", ["etpo", "ppo"])
@pytest.mark.parametrize("use_lora", [False, True])
def test_bf16_update_on_cuda_is_finite(algo, use_lora, record_property):
    args = bench_gpu.parse_args(["--models", "tiny", "--actions", "4", "--prompt-tokens", "64", "--action-tokens",
                                 "32", "--repeats", "2", "--gradient-checkpointing"] + ["--use-lora"] * use_lora)  # fmt: skip
    result = bench_gpu.measure("tiny", algo, args)
    assert math.isfinite(result["policy_loss"]) and result["peak_gib"] > 0
    record_property("peak_gib", result["peak_gib"])
    print(f"{algo} lora={use_lora}: peak {result['peak_gib']:.3f} GiB, {result['tokens_per_s']:.0f} update tokens/s")


def test_short_training_on_cuda(tmp_path):
    """The whole loop on the real env: rollouts sampled on the GPU, updates under bf16 autocast."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from etpo_gym.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    torch.cuda.reset_peak_memory_stats()
    final = train(RunConfig(model=str(tmp_path / "model"), device="cuda", total_steps=4, actions_per_rollout=2,
                            max_action_tokens=16, max_turns=2, output_dir=str(tmp_path / "run"), progress_bar=False,
                            greedy_eval=False, gradient_checkpointing=True))  # fmt: skip
    assert final["device"].startswith("cuda") and final["num_actions"] >= 4
    assert math.isfinite(final["train_reward_mean"])
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(math.isfinite(float(row["policy_loss"])) for row in rows)
    print(f"train: peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB")
