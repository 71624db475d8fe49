"""The byte-level BPE tokenizer shared by the env (``etpo_gym/assets/tokenizer.json``) and etpo-tiny-coder.

Byte-level BPE (GPT-2 pre-tokenization, no prefix space) decodes every byte exactly, so code round-trips with its
whitespace, newlines and indentation. Special tokens: ``<pad>`` = 0, ``<s>`` = 1 (BOS, prepended by the
post-processor on every encode), ``</s>`` = 2 (EOS, ends an action), ``<unk>`` = 3 (never produced: every byte
has a token; kept because the env's loader names it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
"""Special tokens in id order (``<pad>`` = 0 ... ``<unk>`` = 3)."""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return tokenizer


def to_transformers(tokenizer: Tokenizer | str | os.PathLike):
    """Wrap a ``tokenizers.Tokenizer`` (or a ``tokenizer.json`` path) as a ``PreTrainedTokenizerFast``.

    ``clean_up_tokenization_spaces=False`` keeps decoding exact (the clean-up would delete spaces before
    punctuation in code).
    """
    from transformers import PreTrainedTokenizerFast

    source = {"tokenizer_object": tokenizer} if isinstance(tokenizer, Tokenizer) else {"tokenizer_file": tokenizer}
    return PreTrainedTokenizerFast(
        **source, **SPECIAL_TOKENS, clean_up_tokenization_spaces=False, model_max_length=1024
    )
