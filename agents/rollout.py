"""Token-by-token rollout collection: the only code that steps environments and samples from the model.

The collector drives a Gymnasium vector env of ``ETPO-DataSci-v0`` (one token per ``step``). For each sub-env it
keeps the prompt, the tokens sampled so far and a KV cache, so a token costs ONE incremental forward pass; the
context is re-encoded only when the env shows a new prompt (``info["prompt_changed"]``: reset, or a reflection
prompt after a failed action) or after a policy update made the cache stale (:meth:`RolloutCollector.refresh`).

Behaviour policy vs the π of the targets: tokens are sampled from μ = softmax(logits/temperature) restricted to
the top-k tokens; ``Batch.row_logprobs`` are log μ(token). ETPO's soft-Bellman targets and policy loss use the
untempered π = softmax(logits) (soft Q-learning is off-policy, so μ ≠ π is allowed, as in the paper, which
sampled at temperature 0.5 / top-k 50). PPO and REINFORCE optimise the tempered π_T = softmax(logits/T) over the
whole vocabulary and PPO's importance ratios divide by the stored log μ; with the default T = 1 and no top-k,
μ = π exactly.

Memory: the Batch stores token ids, masks, behaviour log-probabilities (one float per token), rewards and flags:
O(tokens) numbers, never tokens × vocabulary. Logits, Q values and π_ref are recomputed during the update.

Overlap of generation and code execution: tokens are sampled ahead of the env. A token is sent to the env in
one ``step``; while the env processes that step (``step_async`` … ``step_wait`` on an async vector env, whose
sub-envs run in worker processes), the model samples the NEXT token of every sub-env whose action continues, and
when some sub-env's action ends on this step (EOS or ``max_action_tokens``: its code executes, seconds) it samples
up to ``lookahead`` tokens ahead for all the others, which later steps then only hand to the env. The env sees the
same ``step`` calls as without look-ahead (Gymnasium semantics unchanged), and the schedule does not depend on
timing, so a seed gives the same batch with sync and async vector envs. Tokens sampled ahead of an action end the
collector did not predict (a stop string) are discarded, as are all of them after a policy update
(:meth:`RolloutCollector.refresh`): they came from the old weights.

Autoreset: gymnasium 1.x vector envs default to NEXT_STEP autoreset (the step after an episode ends resets that
sub-env and ignores its action); the collector sends a dummy action there and records nothing. SAME_STEP mode is
supported too. On truncation (the turn budget) the bootstrap state s_{t+1} is the reflection prompt in
``info["prompt"]``, tokenized like the env does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from etpo_agents.policy import Policy


@dataclass
class Batch:
    """Completed env actions of one rollout, as segments (prompt + action tokens) and decision rows.

    N segments: the completed actions, followed by "bootstrap" segments that hold only the prompt of a next state
    s_{t+1} whose action is not in this batch (the episode continues or was truncated; termination never
    bootstraps). S = longest segment. R decision rows: one per sampled token (the state before the token), plus
    one per bootstrap segment (the state s_{t+1}; masked out of every loss).

    Segment fields:
        input_ids: (N, S) int64, prompt tokens then action tokens, right-padded with the pad id.
        attention_mask: (N, S) int64, 1 on real tokens.
        prompt_lens: (N,) int64, number of prompt tokens P.
        action_lens: (N,) int64, number of action tokens L (0 for bootstrap segments).
        rewards: (N,) float32, env reward r_t of the action (0 for bootstrap segments).
        terminated: (N,) bool, the episode ended naturally after this action (no bootstrap).
        truncated: (N,) bool, the turn budget ended the episode after this action (bootstraps from s_{t+1}).
        next_segment: (N,) int64, index of the segment whose prompt is s_{t+1}; -1 when terminated.
        aucs, test_aucs: (N,) float32, ``info["auc"]`` / ``info["test_auc"]`` of the action, NaN when it failed.
        success: (N,) bool, the code ran and was scored.
        env_ids, episode_ids, turns: (N,) int64, where the action came from.
        datasets: list of N dataset names.

    Row fields (row r is the state before an action token; its distribution comes from the hidden state at
    ``row_positions[r]`` of segment ``row_segments[r]``, i.e. position P − 1 + j for the j-th action token):
        row_segments: (R,) int64.
        row_positions: (R,) int64.
        row_tokens: (R,) int64, the sampled token w^{j+1} (0 on bootstrap rows).
        row_mask: (R,) bool, True for sampled tokens, False for bootstrap rows.
        row_logprobs: (R,) float32, behaviour log μ(token) at sampling time.
        row_is_last: (R,) bool, the token ended its action (the env executed the code after it).
        row_rewards: (R,) float32, the action's reward on its last token, 0 elsewhere.
        row_terminated: (R,) bool, terminated flag on an action's last token.
        row_next: (R,) int64, the row of the next state: r + 1 inside an action, the first row of
            ``next_segment`` on a last token, -1 after termination and on bootstrap rows.

    Counters: ``num_actions`` (env actions = code executions), ``num_tokens`` (sampled tokens).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_lens: torch.Tensor
    action_lens: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_segment: torch.Tensor
    aucs: torch.Tensor
    test_aucs: torch.Tensor
    success: torch.Tensor
    env_ids: torch.Tensor
    episode_ids: torch.Tensor
    turns: torch.Tensor
    datasets: list[str]
    row_segments: torch.Tensor
    row_positions: torch.Tensor
    row_tokens: torch.Tensor
    row_mask: torch.Tensor
    row_logprobs: torch.Tensor
    row_is_last: torch.Tensor
    row_rewards: torch.Tensor
    row_terminated: torch.Tensor
    row_next: torch.Tensor
    num_actions: int = 0
    num_tokens: int = 0

    def nbytes(self) -> int:
        """Bytes held by the batch's tensors (O(tokens); compare with tokens × vocab × 4 B per stored array)."""
        return sum(t.numel() * t.element_size() for t in self.__dict__.values() if isinstance(t, torch.Tensor))

    def to(self, device: torch.device) -> Batch:
        """Copy of the batch with every tensor on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def row_discounts(batch: Batch, gamma: float) -> torch.Tensor:
    """Per-row discount onto ``row_next``: 1 inside an action (tokens share one env time step), γ after an
    action's last token, 0 after termination or where there is no next row. Truncation keeps γ: it bootstraps.

    Returns:
        (R,) float32.
    """
    discounts = torch.where(
        batch.row_is_last, gamma * (~batch.row_terminated).float(), torch.ones_like(batch.row_rewards)
    )
    return discounts * (batch.row_next >= 0).float()


def sample_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> tuple[int, torch.Tensor]:
    """Sample from μ = softmax(logits / T) restricted to the top-k logits; T = 0 is greedy.

    Args:
        logits: (V,) float32 untempered next-token logits.

    Returns:
        ``(token, log μ(token))``: the id on the host (the env needs it) and a () float32 tensor left on the
        logits' device (no second host sync per token); greedy returns log-probability 0.
    """
    if temperature == 0:
        return int(torch.argmax(logits)), torch.zeros((), device=logits.device)
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    logprobs = torch.log_softmax(scaled, dim=-1)
    token = torch.multinomial(logprobs.exp(), 1, generator=generator)  # (1,)
    return int(token), logprobs[token[0]]


@dataclass
class _Segment:
    """One action (or a bootstrap prompt) while it is being collected."""

    env_id: int
    episode_id: int
    turn: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[torch.Tensor] = field(default_factory=list)
    pending: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    """Tokens (with log μ) sampled ahead and not yet sent to the env; ``cache``/``next_logits`` include them."""
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    auc: float = float("nan")
    test_auc: float = float("nan")
    success: bool = False
    dataset: str = ""
    next: _Segment | None = None
    cache: Any = None
    next_logits: torch.Tensor | None = None


def _info_at(infos: dict, key: str, i: int, default: Any = None) -> Any:
    """Value of ``key`` for sub-env ``i`` in a vector env's dict-of-arrays info (respecting ``_key`` masks)."""
    if key not in infos or (f"_{key}" in infos and not infos[f"_{key}"][i]):
        return default
    return infos[key][i]


def _prompt_of(obs: dict, i: int) -> list[int]:
    ids, mask = obs["input_ids"][i], obs["attention_mask"][i]
    return [int(t) for t in ids[mask.astype(bool)]]


class RolloutCollector:
    """Collects completed env actions token by token from a vector env (SB3's rollout half).

    Args:
        envs: a Gymnasium vector env of a token-level ETPO env.
        policy: the :class:`~etpo_agents.policy.Policy` to sample from.
        temperature: sampling temperature (0 = greedy).
        top_k: sample among the k most likely tokens, or ``None``.
        seed: seeds the envs (sub-env i gets ``seed + i``) and the sampling generator.
        lookahead: tokens sampled ahead per sub-env while another sub-env's code executes (see the module
            docstring); 1 only overlaps the next token with the env step, larger keeps the model busy longer.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        policy: Policy,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        lookahead: int = 64,
    ) -> None:
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1 (tokens sampled ahead per sub-env), got {lookahead}")
        self.envs, self.policy = envs, policy
        self.temperature, self.top_k, self.lookahead = temperature, top_k, lookahead
        self.eos_token_id = policy.tokenizer.eos_token_id
        mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self.next_step_reset = mode == gym.vector.AutoresetMode.NEXT_STEP
        if not self.next_step_reset and mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(f"unsupported autoreset mode {mode}; use NEXT_STEP (default) or SAME_STEP")
        self.generator = torch.Generator(device=policy.device_)
        self.generator.manual_seed(seed)
        self.num_envs = envs.num_envs
        obs_len = envs.single_observation_space["input_ids"].shape[0]
        try:
            self.max_action_tokens: int | None = int(envs.get_attr("max_action_tokens")[0])
        except AttributeError:
            self.max_action_tokens = None
        self._prompt_room = obs_len - (self.max_action_tokens or 0)
        self.total_actions = 0
        self.total_tokens = 0
        self._episode_counter = 0
        obs, infos = envs.reset(seed=seed)
        with policy.full_parameters(reference=False):
            self._current = [self._new_segment(i, _prompt_of(obs, i), turn=0) for i in range(self.num_envs)]
        self._awaiting_reset = [False] * self.num_envs
        self._done: list[_Segment] = []

    def _new_segment(self, env_id: int, prompt: list[int], turn: int, episode_id: int | None = None) -> _Segment:
        if episode_id is None:
            episode_id, self._episode_counter = self._episode_counter, self._episode_counter + 1
        segment = _Segment(env_id=env_id, episode_id=episode_id, turn=turn, prompt=prompt)
        segment.next_logits, segment.cache = self.policy.start(prompt)
        return segment

    def refresh(self) -> None:
        """Re-encode every unfinished action after a policy update (its KV cache came from the old weights) and
        drop its tokens sampled ahead (they came from the old policy and were never sent)."""
        with self.policy.full_parameters(reference=False):
            for i, segment in enumerate(self._current):
                if not self._awaiting_reset[i]:
                    segment.pending.clear()
                    segment.next_logits, segment.cache = self.policy.start(segment.prompt + segment.tokens)

    def collect(self, num_actions: int) -> Batch:
        """Step the envs until ``num_actions`` actions have completed; unfinished actions carry over.

        Returns:
            The :class:`Batch` of completed actions (at least ``num_actions``; several envs may finish on the
            same step).
        """
        self._done = []
        with self.policy.full_parameters(reference=False):  # gathered once: ranks sample different lengths
            while len(self._done) < num_actions:
                self._step()
        return self._build_batch()

    def _step(self) -> None:
        """One vector-env step: send each active sub-env its next token, sample ahead while the env runs."""
        active = [i for i in range(self.num_envs) if not self._awaiting_reset[i]]
        actions = np.zeros(self.num_envs, dtype=np.int64)
        ending = set()
        for i in active:
            segment = self._current[i]
            self._sample_ahead(segment, 1)
            token, logprob = segment.pending.pop(0)
            segment.tokens.append(token)
            segment.logprobs.append(logprob)
            actions[i] = token
            if self._ends_action(segment, token, 0):
                ending.add(i)
        self.total_tokens += len(active)
        if hasattr(self.envs, "step_async"):
            self.envs.step_async(actions)
        # Overlap: the model works while the env workers step (code executes for the sub-envs in ``ending``).
        depth = self.lookahead if ending else 1
        for i in active:
            if i not in ending:
                self._sample_ahead(self._current[i], depth)
        if hasattr(self.envs, "step_async"):
            obs, rewards, terminated, truncated, infos = self.envs.step_wait()
        else:
            obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        for i in range(self.num_envs):
            if self._awaiting_reset[i]:  # NEXT_STEP autoreset: this step reset sub-env i, its action was ignored
                self._awaiting_reset[i] = False
                self._current[i] = self._new_segment(i, _prompt_of(obs, i), turn=0)
            elif _info_at(infos, "action_done", i, False) or terminated[i] or truncated[i]:
                self._finish_action(i, obs, float(rewards[i]), bool(terminated[i]), bool(truncated[i]), infos)
            elif i in ending:
                raise RuntimeError(f"sub-env {i} did not end its action on EOS / max_action_tokens; is its tokenizer "
                                   "the policy's?")  # fmt: skip

    def _ends_action(self, segment: _Segment, token: int, num_pending: int) -> bool:
        """Whether ``token`` (followed by ``num_pending`` unsent ones) will end the action: EOS or the budget."""
        length = len(segment.tokens) + num_pending
        return token == self.eos_token_id or (self.max_action_tokens is not None and length >= self.max_action_tokens)

    def _sample_ahead(self, segment: _Segment, depth: int) -> None:
        """Sample until ``depth`` tokens are pending or the last sampled token is predicted to end the action;
        each token costs one incremental forward (none after a predicted end)."""
        while len(segment.pending) < depth and segment.next_logits is not None:
            token, logprob = sample_token(segment.next_logits, self.temperature, self.top_k, self.generator)
            segment.pending.append((token, logprob))
            if self._ends_action(segment, token, len(segment.pending)):
                segment.next_logits = None
            else:
                segment.next_logits, segment.cache = self.policy.advance(token, segment.cache)

    def _finish_action(self, i: int, obs: dict, reward: float, terminated: bool, truncated: bool, infos: dict) -> None:
        segment = self._current[i]
        segment.cache = segment.next_logits = None
        segment.pending.clear()  # sampled ahead past an end the collector did not predict (a stop string)
        segment.reward, segment.terminated, segment.truncated = reward, terminated, truncated
        auc = _info_at(infos, "auc", i)
        segment.success = auc is not None and bool(np.isfinite(auc)) and reward != -1.0
        if segment.success:
            segment.auc = float(auc)
            test_auc = _info_at(infos, "test_auc", i)
            segment.test_auc = float(test_auc) if test_auc is not None else float("nan")
        segment.dataset = str(_info_at(infos, "dataset", i, ""))
        self._done.append(segment)
        self.total_actions += 1
        if truncated and not terminated:
            # The turn budget ended the episode: bootstrap from s_{t+1}, the reflection prompt the env would show
            # next (``info["prompt"]``; the final observation still holds the failed action's tokens).
            prompt = self._tokenize_prompt(str(_info_at(infos, "prompt", i, "")))
            segment.next = _Segment(i, segment.episode_id, segment.turn + 1, prompt)
        if terminated or truncated:
            self._after_episode(i, obs)
            return
        self._current[i] = self._new_segment(i, _prompt_of(obs, i), segment.turn + 1, segment.episode_id)
        segment.next = self._current[i]

    def _tokenize_prompt(self, prompt: str) -> list[int]:
        """Prompt ids as the env would show them (its tokenizer, the same left truncation)."""
        ids = self.policy.tokenizer(prompt)["input_ids"]
        return list(ids[-self._prompt_room :])

    def _after_episode(self, i: int, obs: dict) -> None:
        if self.next_step_reset:
            self._awaiting_reset[i] = True
        else:
            self._current[i] = self._new_segment(i, _prompt_of(obs, i), turn=0)

    def _build_batch(self) -> Batch:
        segments = list(self._done)
        index = {id(s): k for k, s in enumerate(segments)}
        for segment in list(segments):  # successors still being generated become bootstrap prompts
            nxt = segment.next
            if nxt is not None and id(nxt) not in index:
                nxt = _Segment(nxt.env_id, nxt.episode_id, nxt.turn, list(nxt.prompt))
                segment.next = nxt
                index[id(nxt)] = len(segments)
                segments.append(nxt)
        return _to_batch(segments, index, self.policy.tokenizer.pad_token_id or 0, len(self._done))


def _to_batch(segments: list[_Segment], index: dict[int, int], pad_id: int, num_actions: int) -> Batch:
    """Pack segments (completed actions first, bootstrap prompts after) into tensors and decision rows."""
    n = len(segments)
    width = max(len(s.prompt) + len(s.tokens) for s in segments)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    first_row, rows = [], []
    for k, s in enumerate(segments):
        ids = s.prompt + s.tokens
        input_ids[k, : len(ids)] = torch.tensor(ids)
        attention_mask[k, : len(ids)] = 1
        first_row.append(len(rows))
        num_rows = max(len(s.tokens), 1)
        for j in range(num_rows):
            rows.append((k, len(s.prompt) - 1 + j, j < len(s.tokens), j == len(s.tokens) - 1))
    next_segment = [index[id(s.next)] if s.next is not None else -1 for s in segments]
    row_tokens, row_next, row_rewards, row_term = [], [], [], []
    for r, (k, pos, sampled, last) in enumerate(rows):
        s = segments[k]
        j = pos - len(s.prompt) + 1
        row_tokens.append(s.tokens[j] if sampled else 0)
        row_rewards.append(s.reward if last else 0.0)
        row_term.append(s.terminated if last else False)
        if not sampled:
            row_next.append(-1)
        elif not last:
            row_next.append(r + 1)
        else:
            row_next.append(first_row[next_segment[k]] if next_segment[k] >= 0 else -1)
    long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    row_mask = torch.tensor([r[2] for r in rows])
    row_logprobs = torch.zeros(len(rows), dtype=torch.float32)
    sampled_logprobs = [lp for s in segments for lp in s.logprobs]
    if sampled_logprobs:  # one device -> host copy per batch
        row_logprobs[row_mask] = torch.stack(sampled_logprobs).float().cpu()
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prompt_lens=long([len(s.prompt) for s in segments]),
        action_lens=long([len(s.tokens) for s in segments]),
        rewards=torch.tensor([s.reward for s in segments], dtype=torch.float32),
        terminated=torch.tensor([s.terminated for s in segments]),
        truncated=torch.tensor([s.truncated for s in segments]),
        next_segment=long(next_segment),
        aucs=torch.tensor([s.auc for s in segments], dtype=torch.float32),
        test_aucs=torch.tensor([s.test_auc for s in segments], dtype=torch.float32),
        success=torch.tensor([s.success for s in segments]),
        env_ids=long([s.env_id for s in segments]),
        episode_ids=long([s.episode_id for s in segments]),
        turns=long([s.turn for s in segments]),
        datasets=[s.dataset for s in segments],
        row_segments=long([r[0] for r in rows]),
        row_positions=long([r[1] for r in rows]),
        row_tokens=long(row_tokens),
        row_mask=row_mask,
        row_logprobs=row_logprobs,
        row_is_last=torch.tensor([r[2] and r[3] for r in rows]),
        row_rewards=torch.tensor(row_rewards, dtype=torch.float32),
        row_terminated=torch.tensor(row_term),
        row_next=long(row_next),
        num_actions=num_actions,
        num_tokens=int(sum(len(s.tokens) for s in segments)),
    )


def segment_minibatches(
    batch: Batch,
    num_minibatches: int,
    generator: torch.Generator | None = None,
    segment_ids: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Random split of segment ids into at most ``num_minibatches`` non-empty minibatches.

    Splitting by action keeps an action's tokens together (one forward pass each); bootstrap segments only feed
    targets and are never in a minibatch.

    Args:
        batch: the rollout batch.
        num_minibatches: the number of minibatches (fewer when there are fewer segments).
        generator: draws the order; the collector's generator lives on the policy's device.
        segment_ids: (n,) int64 CPU ids to split, e.g. the actions GRPO or RFT train on; default every completed
            action (segments ``0..num_actions-1``).

    Returns:
        (n_mb,) int64 CPU tensors of segment ids that together hold every id once.
    """
    if segment_ids is None:
        segment_ids = torch.arange(batch.num_actions)
    device = generator.device if generator is not None else None
    order = segment_ids[torch.randperm(len(segment_ids), generator=generator, device=device).cpu()]
    return [chunk for chunk in torch.tensor_split(order, min(num_minibatches, len(segment_ids))) if len(chunk)]


def segment_rows(
    batch: Batch, segment_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The decision rows of some segments and the inputs of one forward pass over those segments.

    Returns:
        ``rows`` (R_mb,) int64 indices into the batch's row fields; ``input_ids`` and ``attention_mask``
        (n, S_mb) trimmed to the longest segment; ``where``, the (sequence, position) index of each row's
        hidden state in that forward pass.
    """
    segment_ids = segment_ids.to(batch.row_segments.device)
    lookup = torch.full((len(batch.prompt_lens),), -1, dtype=torch.long, device=segment_ids.device)
    lookup[segment_ids] = torch.arange(len(segment_ids), device=segment_ids.device)
    rows = torch.nonzero(lookup[batch.row_segments] >= 0).squeeze(1)
    width = int((batch.prompt_lens[segment_ids] + batch.action_lens[segment_ids]).max())
    input_ids, attention_mask = batch.input_ids[segment_ids, :width], batch.attention_mask[segment_ids, :width]
    return rows, input_ids, attention_mask, (lookup[batch.row_segments[rows]], batch.row_positions[rows])


def forward_rows(
    policy: Policy, batch: Batch, segment_ids: torch.Tensor, with_ref: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One forward pass over some segments; hidden states (and π_ref logits) at their decision rows.

    Args:
        policy: the policy (its device is used).
        batch: the rollout batch (on the policy's device).
        segment_ids: (n,) int64 segment indices.
        with_ref: also return π_ref's logits at the rows.

    Returns:
        ``rows`` (R_mb,) int64 indices into the batch's row fields, ``hidden`` (R_mb, H) backbone states (with
        grad when grad is enabled), ``ref_logits`` (R_mb, V) float32 or None.
    """
    rows, input_ids, attention_mask, where = segment_rows(batch, segment_ids)
    hidden = policy.hidden_states(input_ids, attention_mask)[where]  # (R_mb, H)
    ref_logits = policy.ref_logits(input_ids, attention_mask, where) if with_ref else None  # (R_mb, V)
    return rows, hidden, ref_logits


@torch.no_grad()
def reference_hidden_states(policy: Policy, batch: Batch, chunk_size: int = 16) -> torch.Tensor:
    """π_ref's last hidden states at every row of the batch, (R, H).

    π_ref is frozen, so one pass per update serves every epoch and minibatch; its logits are recomputed from
    these on demand (:meth:`Policy.ref_logits_from_hidden`: R × H numbers are kept, never R × V).
    """
    ref_hidden = None
    with policy.full_parameters():
        for segment_ids in torch.arange(len(batch.prompt_lens)).split(chunk_size):
            rows, input_ids, attention_mask, where = segment_rows(batch, segment_ids)
            hidden = policy.ref_hidden_states(input_ids, attention_mask, where)  # (R_chunk, H)
            if ref_hidden is None:
                ref_hidden = hidden.new_zeros(len(batch.row_segments), hidden.shape[-1])
            ref_hidden[rows] = hidden
    return ref_hidden


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is True (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def exact_ref_kl(
    logprobs: torch.Tensor, ref_logits: torch.Tensor, temperature: float, mask: torch.Tensor
) -> torch.Tensor:
    """Masked mean over rows of the exact KL(π_T‖π_ref,T) = Σ_w π_T(w)·(log π_T(w) − log π_ref,T(w)).

    Args:
        logprobs: (R, V) log π_T of every vocabulary token (with grad).
        ref_logits: (R, V) untempered π_ref logits; π_ref,T = softmax(ref_logits / T).
        temperature: T, the temperature ``logprobs`` were made with.
        mask: (R,) bool rows to average over.

    Returns:
        The scalar KL (with grad), in nats per row.
    """
    ref_logprobs = F.log_softmax(ref_logits / temperature, -1)  # (R, V)
    return masked_mean((logprobs.exp() * (logprobs - ref_logprobs)).sum(-1), mask)
