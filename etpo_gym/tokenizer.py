"""Tokenizer loading and the per-token text table used for cheap stop-string checks.

The default tokenizer is a byte-level BPE trained on Python / scikit-learn code and shipped in the package
(``etpo_gym/assets/tokenizer.json``); the embedded policy ``etpo-tiny-coder`` uses the same one. Any Hugging Face
tokenizer works too. Only ``transformers``' tokenizer classes are imported -- never torch.
"""

from __future__ import annotations

import os
from importlib import resources

DEFAULT_TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def default_tokenizer_path() -> str:
    """Path of the packaged default tokenizer file."""
    return str(resources.files("etpo_gym").joinpath("assets", DEFAULT_TOKENIZER_FILE))


def load_tokenizer(tokenizer=None, *, local_files_only: bool = False):
    """Return a Hugging Face tokenizer from an object, a path, a hub id, or ``None`` for the packaged default.

    Args:
        tokenizer: ``None``; a ``transformers`` tokenizer (returned as is); a ``tokenizers.Tokenizer``; a path to
            a ``tokenizer.json`` file or a directory saved with ``save_pretrained``; or a hub id.
        local_files_only: forwarded to ``AutoTokenizer.from_pretrained`` for hub ids.

    Raises:
        ValueError: the tokenizer has no EOS token (an action could never end before ``max_action_tokens``)
            or cannot be loaded.
    """
    from transformers import PreTrainedTokenizerFast

    if tokenizer is None:
        tokenizer = default_tokenizer_path()
    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if path.endswith(".json") and os.path.isfile(path):
            tokenizer = PreTrainedTokenizerFast(tokenizer_file=path, **SPECIAL_TOKENS)
        else:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
            except (OSError, ValueError) as error:
                raise ValueError(f"could not load tokenizer {path!r}: {error}") from error
    elif type(tokenizer).__module__.startswith("tokenizers"):
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos_token_id; actions end at EOS")
    return tokenizer


def token_texts(tokenizer) -> list[str]:
    """Text of every token id on its own, for incremental stop-string checks without re-decoding.

    Byte-level BPE tokens decode exactly (up to split multi-byte characters, irrelevant for ASCII stop
    strings); SentencePiece pieces map ``▁`` to a space and ``<0x0A>`` byte tokens to their character.
    """
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if any(isinstance(p, str) and p.startswith("\u2581") for p in pieces):
        texts = []
        for piece in pieces:
            piece = piece or ""
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                texts.append(chr(int(piece[3:5], 16)))
            else:
                texts.append(piece.replace("\u2581", " "))
        return texts
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
