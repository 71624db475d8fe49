"""Shared fixtures: real envs over the packaged tokenizer and a small bundled dataset."""

from __future__ import annotations

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
