"""``ETPO-TokenCredit-v0``: a token-level credit-assignment diagnostic with the interface of ``ETPO-DataSci-v0``.

In the spirit of bsuite's credit-assignment experiments (umbrella / discounting chain): the reward of an action
depends only on one or two *key* token choices placed at a chosen distance from the action's end, among L filler
positions that do not matter. Nothing is executed, so thousands of episodes run per minute on a CPU, and the
soft-optimal policy is known in closed form (:func:`soft_optimal_probs`), so an agent's convergence can be tested.

Importing this module does not import torch; :func:`make_model_and_tokenizer` (the tiny policy the agents use on
this env) imports ``torch`` and ``transformers`` when called.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

BOS_TOKEN_ID = 0
"""The prompt (one token) and the padding id."""
EOS_TOKEN_ID = 1
"""Ends an action early (the key tokens not yet chosen count as wrong)."""
FIRST_CONTENT_TOKEN_ID = 2
"""Ids ``2 .. vocab_size - 1`` are content tokens; key ``i``'s rewarded token is ``2 + i``."""


class TokenCreditEnv(gym.Env):
    """Choose L tokens; only the one or two key positions near the end decide the reward.

    ## Description
    The observation is a one-token prompt (``<s>``) followed by the action's tokens so far, exactly as in
    ``ETPO-DataSci-v0``; one ``step`` is one token. An action has ``action_length`` = L positions. Key position i
    (i = 0 .. ``num_keys`` − 1) sits ``key_distance + num_keys − 1 − i`` tokens before the action's end (distance 1
    is the last token), so the last key is ``key_distance`` from the end; the other positions are fillers whose
    choice never matters. A causal policy can tell the positions apart: the observation holds the tokens so far.
    Under a near-uniform reference policy the fillers have high entropy, so an algorithm that cannot assign
    credit to the key position sees the reward as noise spread over L decisions.

    ## Action Space
    ``Discrete(vocab_size)``: the next token. ``0`` is ``<s>`` (a content token if sampled), ``1`` is EOS, which
    ends the action at once; ``2 .. vocab_size − 1`` are content tokens.

    ## Observation Space
    | key              | space                                                 | meaning                               |
    |------------------|-------------------------------------------------------|---------------------------------------|
    | `input_ids`      | `Box(0, vocab_size - 1, (action_length + 1,), int64)` | `<s>`, the tokens so far, 0-padded    |
    | `attention_mask` | `Box(0, 1, (action_length + 1,), int64)`              | 1 on real tokens, 0 on padding        |

    ## Rewards
    0 on every token that does not end the action. On the token that ends it:
    R = (1/num_keys)·Σ_i 1[token at key position i == 2 + i] + ``reward_noise``·ε, ε ~ N(0, 1) from ``np_random``.
    A key position the action did not reach (an earlier EOS), or holds EOS, counts as wrong. The optimal expected
    reward is 1.

    ## Starting State
    The prompt ``<s>``; nothing is random except the reward noise.

    ## Episode End
    - Termination: the action's end (EOS, or the L-th token): one action per episode.
    - Truncation: never.

    ## Info keys
    | key              | when              | meaning                                                         |
    |------------------|-------------------|-----------------------------------------------------------------|
    | `prompt`         | reset, action end | the prompt text, `"<s>"`                                        |
    | `prompt_changed` | every step        | True on reset only                                              |
    | `action_done`    | every step        | True on the token that ended the action                         |
    | `action_tokens`  | every step        | tokens of the action so far                                     |
    | `dataset`        | reset, action end | `"token_credit"` (read by the agents' rollout collector)        |
    | `key_tokens`     | action end        | the tokens at the key positions (EOS where not reached)         |
    | `auc`, `test_auc` | action end       | the noiseless reward in [0, 1] (the collector's success metric) |
    | `stop_reason`    | action end        | `"eos"` or `"max_action_tokens"`                                |

    ## Arguments
    | argument        | default | meaning                                                                 |
    |-----------------|---------|-------------------------------------------------------------------------|
    | `vocab_size`    | 8       | V, including `<s>` and EOS (>= 2 + num_keys)                            |
    | `action_length` | 8       | L, positions per action (`max_action_tokens`)                            |
    | `key_distance`  | 1       | distance of the last key from the action's end (1 = the last token)     |
    | `num_keys`      | 1       | 1 or 2 key positions (adjacent)                                          |
    | `reward_noise`  | 0.0     | standard deviation of the Gaussian noise added to the reward             |
    | `render_mode`   | None    | `"ansi"` returns the action so far as token ids                          |

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        vocab_size: int = 8,
        action_length: int = 8,
        key_distance: int = 1,
        num_keys: int = 1,
        reward_noise: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if num_keys not in (1, 2):
            raise ValueError(f"num_keys must be 1 or 2, got {num_keys}")
        if vocab_size < FIRST_CONTENT_TOKEN_ID + num_keys:
            raise ValueError(f"vocab_size must be >= {FIRST_CONTENT_TOKEN_ID + num_keys} (<s>, EOS and one rewarded "
                             f"token per key), got {vocab_size}")  # fmt: skip
        if action_length < 1:
            raise ValueError(f"action_length must be >= 1, got {action_length}")
        if not 1 <= key_distance <= action_length - num_keys + 1:
            raise ValueError(f"key_distance must be in [1, action_length - num_keys + 1] = "
                             f"[1, {action_length - num_keys + 1}], got {key_distance}")  # fmt: skip
        if reward_noise < 0:
            raise ValueError(f"reward_noise must be >= 0, got {reward_noise}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.vocab_size, self.action_length, self.key_distance = vocab_size, action_length, key_distance
        self.num_keys, self.reward_noise, self.render_mode = num_keys, reward_noise, render_mode
        self.max_action_tokens = action_length  # read by the rollout collector
        self.max_obs_tokens = action_length + 1
        self.eos_token_id, self.pad_token_id = EOS_TOKEN_ID, BOS_TOKEN_ID
        self.key_positions = [action_length - key_distance - (num_keys - 1 - i) for i in range(num_keys)]
        """0-based token index of each key inside the action."""
        self.action_space = spaces.Discrete(vocab_size)
        self.observation_space = spaces.Dict(
            {
                "input_ids": spaces.Box(0, vocab_size - 1, (self.max_obs_tokens,), np.int64),
                "attention_mask": spaces.Box(0, 1, (self.max_obs_tokens,), np.int64),
            }
        )
        self._input_ids = np.zeros(self.max_obs_tokens, dtype=np.int64)
        self._attention_mask = np.zeros(self.max_obs_tokens, dtype=np.int64)
        self._tokens: list[int] = []
        self._needs_reset = True

    def key_rewards(self, key: int) -> np.ndarray:
        """(V,) float64: the reward each token contributes at key position ``key`` (1/num_keys for token 2 + key)."""
        rewards = np.zeros(self.vocab_size)
        rewards[FIRST_CONTENT_TOKEN_ID + key] = 1.0 / self.num_keys
        return rewards

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._tokens = []
        self._input_ids.fill(BOS_TOKEN_ID)
        self._attention_mask.fill(0)
        self._attention_mask[0] = 1
        self._needs_reset = False
        info = {"prompt": "<s>", "prompt_changed": True, "action_done": False, "action_tokens": 0,
                "dataset": "token_credit"}  # fmt: skip
        return self._observation(), info

    def step(self, action):
        if self._needs_reset:
            raise gym.error.ResetNeeded("the episode has ended (or never started): call reset() before step()")
        if isinstance(action, np.ndarray) and action.shape in ((), (1,)) and np.issubdtype(action.dtype, np.integer):
            action = action.reshape(()).item()
        if not isinstance(action, (int, np.integer)) or isinstance(action, bool) or not 0 <= action < self.vocab_size:
            raise gym.error.InvalidAction(
                f"action must be an integer token id in [0, {self.vocab_size}), got {action!r}"
            )
        token = int(action)
        self._tokens.append(token)
        self._input_ids[len(self._tokens)] = token
        self._attention_mask[len(self._tokens)] = 1
        ended_by_eos = token == EOS_TOKEN_ID
        if not ended_by_eos and len(self._tokens) < self.action_length:
            info = {"prompt_changed": False, "action_done": False, "action_tokens": len(self._tokens)}
            return self._observation(), 0.0, False, False, info
        keys = [self._tokens[p] if p < len(self._tokens) else EOS_TOKEN_ID for p in self.key_positions]
        score = sum(float(self.key_rewards(i)[k]) for i, k in enumerate(keys))
        reward = score + (self.reward_noise * float(self.np_random.standard_normal()) if self.reward_noise else 0.0)
        self._needs_reset = True
        info = {"prompt": "<s>", "prompt_changed": False, "action_done": True, "action_tokens": len(self._tokens),
                "dataset": "token_credit", "key_tokens": keys, "auc": score, "test_auc": score,
                "stop_reason": "eos" if ended_by_eos else "max_action_tokens"}  # fmt: skip
        return self._observation(), reward, True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "<s> " + " ".join(str(t) for t in self._tokens)

    def _observation(self) -> dict[str, np.ndarray]:
        return {"input_ids": self._input_ids.copy(), "attention_mask": self._attention_mask.copy()}


def soft_value(ref_probs: np.ndarray, rewards: np.ndarray, beta: float) -> float:
    """V* = β·log Σ_w π_ref(w)·exp(q(w)/β): the soft-optimal value of one decision whose tokens are worth q."""
    with np.errstate(divide="ignore"):  # π_ref(w) = 0 gives log 0 = -inf: w keeps probability 0
        logits = np.log(ref_probs) + np.asarray(rewards) / beta
    top = logits.max()
    return float(beta * (top + np.log(np.exp(logits - top).sum())))


def soft_optimal_probs(
    ref_probs: np.ndarray, rewards: np.ndarray, beta: float, continuation: np.ndarray | None = None
) -> np.ndarray:
    """π*(w|x) = π_ref(w|x)·exp(Q*(x, w)/β)/Z at a key position, in closed form.

    For the objective E[R] − β·KL(π‖π_ref), Q*(x, w) at the last key is its reward contribution
    ``rewards`` (:meth:`TokenCreditEnv.key_rewards`; what follows it no longer changes R, so π* = π_ref after it
    and the rest of the action adds nothing). At the first of two keys, add ``continuation[w]``: the soft value
    of the second key after w, :func:`soft_value` of π_ref there and its rewards (0 for EOS, which ends the
    action before the second key). Constant terms (earlier keys) cancel in the normalisation.

    Args:
        ref_probs: (V,) π_ref(·|x) at the key position.
        rewards: (V,) the key's reward contributions.
        beta: β > 0.
        continuation: (V,) optional soft value of what follows each token.

    Returns:
        (V,) float64 probabilities.
    """
    q = np.asarray(rewards, dtype=np.float64) + (0.0 if continuation is None else np.asarray(continuation))
    with np.errstate(divide="ignore"):
        logits = np.log(ref_probs) + q / beta
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


def make_model_and_tokenizer(
    vocab_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 1,
    special_logit: float = -6.0,
    max_positions: int = 512,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A tiny random Llama policy and a word-level tokenizer for this env (no download; imports torch).

    The LM head gets a bias that lowers the logits of ``<s>`` and EOS by ``special_logit`` (π_ref(EOS) ≈
    e^-6/(V − 2) per position by default), so the reference policy is near-uniform over the content tokens
    (high-entropy fillers) and rarely ends an action early even at L = 128.

    Returns:
        ``(model, tokenizer)``: a ``LlamaForCausalLM`` and a ``PreTrainedTokenizerFast`` (``<s>`` = 0 also as pad,
        ``</s>`` = 1, content tokens ``t2``, ``t3``, ...).
    """
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<s>": BOS_TOKEN_ID, "</s>": EOS_TOKEN_ID}
    vocab.update({f"t{i}": i for i in range(FIRST_CONTENT_TOKEN_ID, vocab_size)})
    backend = Tokenizer(WordLevel(vocab, unk_token="<s>"))
    backend.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<s>", unk_token="<s>")  # fmt: skip
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=max_positions, tie_word_embeddings=False, bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID, pad_token_id=None,
    )  # fmt: skip
    # No padding_idx: the tokenizer pads with <s> (masked out), but an embedding row fixed at zero would make <s>,
    # the prompt, a zero vector and the first action token's state constant (its logits the head's bias alone).
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    head = torch.nn.Linear(hidden_size, vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[[BOS_TOKEN_ID, EOS_TOKEN_ID]] = special_logit
    model.lm_head = head
    return model, tokenizer
