"""Shared fixtures: real envs over the packaged tokenizer and a small bundled dataset."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly on machines without CUDA (they are also deselected by default)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a 2-core machine whose other core runs
    sandboxed code, OpenMP threads oversubscribe it (an A2C test ran 8x slower with 2 threads)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def executor():
    """One sandboxed executor shared by a module's envs (workers start once)."""
    from etpo_gym.executor import CodeExecutor

    with CodeExecutor(timeout_s=10) as shared:
        yield shared


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama over the env's packaged tokenizer, saved like a hub model (no download)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from etpo_gym.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("tiny-llama"))
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def encode_action(tokenizer, body: str) -> list[int]:
    """Token ids an agent would emit for ``body``, ending with EOS."""
    return tokenizer.encode(body, add_special_tokens=False) + [tokenizer.eos_token_id]


def run_action(env, body: str):
    """Feed ``body`` token by token; returns the last step's five-tuple."""
    for token in encode_action(env.unwrapped.tokenizer, body):
        result = env.step(token)
        if result[4].get("action_done"):
            return result
    raise AssertionError("the action did not end at EOS")


EMBEDDED_MODEL_DIR = os.path.join(os.path.dirname(__file__), "..", "agents", "assets", "etpo-tiny-coder")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    """The embedded model when installed, else the tiny random Llama over the env's packaged tokenizer."""
    return EMBEDDED_MODEL_DIR if os.path.exists(os.path.join(EMBEDDED_MODEL_DIR, "config.json")) else tiny_model_dir


@pytest.fixture(scope="module")
def model_changed(model_dir) -> Callable[[str], bool]:
    """``changed(output_dir)``: whether the run's ``checkpoint.pt`` holds LM weights other than ``model_dir``'s."""
    import torch

    from etpo_agents.policy import load_policy

    def changed(output_dir: str) -> bool:
        initial, _ = load_policy(model_dir)
        path = os.path.join(output_dir, "checkpoint.pt")
        trained = torch.load(path, map_location="cpu", weights_only=False)["policy"]
        return any(not torch.equal(v, trained[f"model.{k}"]) for k, v in initial.state_dict().items())

    return changed
