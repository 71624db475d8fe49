"""Configuration dataclasses: one :class:`RunConfig` shared by every agent, plus one config per algorithm.

Every field is documented once, in the attribute docstring below it (meaning, units, range, paper symbol, why this
default). ``__post_init__`` validates and raises ``ValueError`` naming the problem and the fix. One name per concept
across algorithms: ``gamma`` is always the discount between env actions, ``kl_coef``/``beta`` the weight of
KL(π‖π_ref), ``num_epochs``/``num_minibatches`` the passes over one rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etpo_agents.evaluation import EvalConfig


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class RunConfig:
    """Settings shared by every agent: env, model, sampling, budget, optimiser, logging."""

    algo: str = "etpo"
    """Agent name: ``etpo``, ``etpo-one-step``, ``etpo-official-loss``, ``ppo``, ``reinforce``, ``grpo``,
    ``dr-grpo``, ``rft``, ``grpo-placebo``, ``base``, ``sb3-ppo``, ``sb3-a2c``, or one added with
    ``register_algorithm`` (see ``etpo_agents.train``); ``etpo-td-lambda`` and ``etpo-conservative`` are deprecated
    aliases of ``etpo``. ``trl-grpo`` takes no ``RunConfig``: see
    ``etpo_agents.trl``."""
    env_id: str = "ETPO-DataSci-v0"
    """Gymnasium id of the token-level env (one token per ``step``)."""
    dataset: str | list[str] | None = "pharyngitis"
    """Dataset(s) passed to the env; a list is sampled per episode by the env, ``None`` is the env's default."""
    model: str = "etpo-tiny-coder"
    """Policy: ``etpo-tiny-coder`` (packaged), a local directory, or a Hugging Face hub id (cached only)."""
    local_files_only: bool = True
    """Load hub ids from the local cache only; set False to allow a download (never done in tests)."""
    total_steps: int = 64
    """Budget in env actions (code executions), the unit of the paper's sample-efficiency curves."""
    seed: int = 0
    """Seeds python, numpy, torch and the envs (env ``i`` gets ``seed + i``)."""
    output_dir: str = "runs/etpo"
    """Directory for ``metrics.csv``, TensorBoard events, ``checkpoint.pt`` and ``final_metrics.json``."""
    num_envs: int = 1
    """Sub-envs of the vector env; tokens are sampled for each in turn, code executes in the env workers."""
    vectorization_mode: str = "sync"
    """``sync`` or ``async`` (subprocess workers: code execution overlaps across envs)."""
    actions_per_rollout: int = 8
    """Completed env actions per update (the rollout length, in actions). Unfinished actions carry over."""
    temperature: float = 1.0
    """Sampling temperature of the behaviour policy; ``0`` is greedy (``base`` agent only). The paper sampled at
    0.5; 1.0 keeps the behaviour equal to π so PPO/REINFORCE stay on-policy. ETPO's targets use the untempered π."""
    top_k: int | None = None
    """Sample from the k most likely tokens only (the paper: 50); ``None`` samples from the whole vocabulary."""
    max_turns: int = 5
    """Env actions per episode before truncation (first attempt plus reflections), the paper's turn budget."""
    max_action_tokens: int = 256
    """Tokens per action before the env forces the action's end."""
    max_obs_tokens: int = 1024
    """Observation length of the env (prompt plus action so far)."""
    prompt_style: str = "paper"
    """Env prompt style: ``paper`` (the official prompt) or ``rich`` (adds column descriptions)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gym.make_vec`` (e.g. executor settings)."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), or any torch device string. Under ``accelerate launch`` with several
    processes each rank uses its own device (``accelerator.device``) instead."""
    fsdp: bool = False
    """Several processes only: shard parameters, gradients and optimiser state over the ranks (PyTorch FSDP2)
    instead of replicating them (DDP). Rollouts and no-grad passes gather the full parameters once per pass
    (``agents/policy.py``), so the model's parameters must fit one device; its training state need not. Ignored
    by a single process."""
    gradient_checkpointing: bool = False
    """Recompute decoder activations during backward: less activation memory for ~30% more compute in the update;
    sampling is unaffected. Worth it for billion-parameter models and long prompts."""
    lookahead_tokens: int = 64
    """Tokens sampled ahead per sub-env while another sub-env's code executes (``agents/rollout.py``): keeps the
    model busy during execution. At most this many per sub-env are discarded after each update (they came from the
    old weights), so it trades a little compute for overlap."""
    use_lora: bool = False
    """Train LoRA adapters (π_ref = the same base with adapters disabled, no copy). Off for the tiny model, where a
    frozen full copy as π_ref costs a few MB; turn on for billion-parameter models."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (effective scale ``lora_alpha / lora_r``)."""
    lora_target_modules: list[str] | None = None
    """Module names to adapt; ``None`` lets peft pick the defaults for the architecture."""
    q_rank: int | None = None
    """ETPO's soft-Q head: ``None`` is a full hidden × vocabulary linear map; ``r`` factorises it as hidden → r →
    vocabulary (for 100k+ vocabularies, where the full head and its Polyak target cost GBs)."""
    learning_rate: float = 1e-4
    """Adam learning rate of the policy (backbone or adapters)."""
    head_learning_rate: float | None = 1e-3
    """Adam learning rate of the critic / value head; ``None`` uses ``learning_rate``. Higher by default because
    the head starts at zero and must reach the reward scale quickly."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    save_every: int = 10
    """Write ``checkpoint.pt`` every this many updates (and at the end); ``0`` only at the end."""
    resume: bool = False
    """Continue from ``output_dir/checkpoint.pt``: step count, weights, optimiser, RNG state, logs."""
    greedy_eval: bool = True
    """At the end, write one greedy (argmax) action per dataset and report its AUCs (``etpo_agents.train.evaluate``)."""
    evaluation: EvalConfig | None = None
    """At the end, also sample K first-turn actions and whole episodes per dataset from the trained policy
    (``etpo_agents.evaluation.evaluate_policy``: sampled reward, success, AUCs, exact KL to π_ref per action);
    ``None`` skips it. ``benchmarks/compare.py`` sets it for every cell."""
    progress_bar: bool = True
    """Show a tqdm bar over env actions."""

    def __post_init__(self) -> None:
        _check(self.total_steps > 0, f"total_steps must be > 0 (env actions), got {self.total_steps}")
        _check(self.num_envs >= 1, f"num_envs must be >= 1, got {self.num_envs}")
        _check(
            self.vectorization_mode in ("sync", "async"),
            f"vectorization_mode must be 'sync' or 'async', got {self.vectorization_mode!r}",
        )
        _check(self.actions_per_rollout >= 1, f"actions_per_rollout must be >= 1, got {self.actions_per_rollout}")
        _check(self.temperature >= 0, f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        _check(
            self.temperature > 0 or self.algo == "base",
            f"temperature 0 (greedy) only suits the base agent: {self.algo} learns from sampled tokens (PPO's "
            "ratio needs their sampling probabilities, and greedy rollouts explore nothing)",
        )
        _check(self.top_k is None or self.top_k >= 1, f"top_k must be None or >= 1, got {self.top_k}")
        _check(self.max_turns >= 1, f"max_turns must be >= 1, got {self.max_turns}")
        _check(self.max_action_tokens >= 1, f"max_action_tokens must be >= 1, got {self.max_action_tokens}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(self.q_rank is None or self.q_rank >= 1, f"q_rank must be None or >= 1, got {self.q_rank}")
        _check(
            self.head_learning_rate is None or self.head_learning_rate > 0,
            f"head_learning_rate must be None or > 0, got {self.head_learning_rate}",
        )
        _check(self.max_grad_norm > 0, f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        _check(self.save_every >= 0, f"save_every must be >= 0 (0 = only at the end), got {self.save_every}")
        _check(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        _check(self.lookahead_tokens >= 1, f"lookahead_tokens must be >= 1, got {self.lookahead_tokens}")


@dataclass
class _UpdateConfig:
    """Fields every learning algorithm shares."""

    gamma: float = 0.99
    """Discount γ between env actions (never inside an action: tokens of one action share its time step)."""
    num_epochs: int = 2
    """Passes over each rollout."""
    num_minibatches: int = 2
    """Minibatches per epoch (split by actions, so an action's tokens stay together)."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma}")
        _check(self.num_epochs >= 1, f"num_epochs must be >= 1, got {self.num_epochs}")
        _check(self.num_minibatches >= 1, f"num_minibatches must be >= 1, got {self.num_minibatches}")


@dataclass
class _ActorCriticConfig(_UpdateConfig):
    """Fields of the algorithms with a critic head on the policy's backbone (ETPO's soft Q, PPO's value)."""

    critic_backbone_grad: bool = True
    """Let the critic loss train the shared backbone (as a shared-trunk actor-critic); False detaches the head's
    input, so the backbone moves only with the policy loss and the critic is a head on the policy's features."""


@dataclass
class ETPOConfig(_ActorCriticConfig):
    """Entropy-regularized token-level policy optimisation (arXiv 2402.06700), see ``agents/etpo.py``."""

    num_epochs: int = 1
    """Passes over each rollout (× ``num_minibatches`` = 2 gradient steps per rollout). 1 by default: on the
    development datasets it reached the same sampled reward as 2 passes (+0.012, p = 0.68) at a third of the KL to
    π_ref (0.17 vs 0.46 nats per action), and 4 passes collapsed (KL 60 nats, reward −0.10;
    ``benchmarks/results/sweep_etpo_steps.md``)."""
    beta: float = 0.05
    """β, the weight of KL(π‖π_ref) in the objective and the temperature of π* ∝ π_ref·exp(Q/β). Small enough
    that a reward gap of ~0.1 AUC moves π noticeably; the paper leaves its value unstated."""
    tau: float = 0.05
    """Polyak rate of the target critic head Q̄ ← (1−τ)·Q̄ + τ·Q, applied after every gradient step."""
    critic_coef: float = 1.0
    """Weight of the critic (soft-Q regression) loss added to the policy loss on the shared backbone."""
    critic_loss: str = "mse"
    """``mse`` (the paper's squared TD error) or ``huber`` (δ = 1, robust to -1 failure spikes)."""
    td_lambda: float = 0.95
    """λ of soft TD(λ) critic targets inside an action (``etpo_agents.etpo.soft_lambda_targets``, an extension): 0 is
    the paper's one-step per-token backup (agent ``etpo-one-step``), which moves an action's reward back by one token
    per target pass; λ → 1 reaches the first tokens at once (more variance; biased when sampling is tempered or
    top-k). 0.95 by default: replaying a real batch, one-step targets were ~0.01 from 3 tokens before an action's
    end, 40-80 tokens before which the classifier is chosen (0.12 there with λ = 0.95), and they let π drift to
    early EOS 2-4× more (``benchmarks/results/etpo_critic.md``); on ETPO-TokenCredit-v0 the one-step agent did not
    learn a key token 4 positions before the end within 512 episodes, ``etpo`` did in all 3 seeds, but learned a
    key on the last token more slowly (``benchmarks/results/credit/README.md``)."""
    conservative_coef: float = 0.3
    """Weight of the conservative soft-Q regulariser (``etpo_agents.etpo.conservative_loss``, CQL-style, an
    extension): lowers Q where π* ∝ π_ref·exp(Q/β) puts mass the sampled tokens never took (e.g. an early EOS
    inside an action). 0 is the paper (``etpo-one-step``). 0.3 by default: replaying a real batch for 24 steps,
    the premature-EOS probability went 0.078 → 0.208 without it and → 0.119 with it (0.080 at 1.0), and it did not
    lower the sampled reward on the development datasets (``benchmarks/results/etpo_critic.md``, section 3;
    ``benchmarks/results/etpo_conservative_dev/``)."""
    policy_loss: str = "exact"
    """``exact``: Σ_w π(w)[β log π(w) − β log π_ref(w) − Q(w)] (the paper). ``official``: the official code's
    mean_w(β log π(w) − Q(w).detach()), which has no π weighting, so the policy ignores the critic; kept only
    for the ``etpo-official-loss`` ablation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.beta > 0, f"beta must be > 0 (it divides Q in π*), got {self.beta}")
        _check(0.0 < self.tau <= 1.0, f"tau must be in (0, 1], got {self.tau}")
        _check(self.critic_coef >= 0, f"critic_coef must be >= 0, got {self.critic_coef}")
        _check(0.0 <= self.td_lambda <= 1.0, f"td_lambda must be in [0, 1], got {self.td_lambda}")
        _check(self.conservative_coef >= 0, f"conservative_coef must be >= 0, got {self.conservative_coef}")
        _check(self.critic_loss in ("mse", "huber"), f"critic_loss must be 'mse' or 'huber', got {self.critic_loss!r}")
        _check(
            self.policy_loss in ("exact", "official"),
            f"policy_loss must be 'exact' or 'official', got {self.policy_loss!r}",
        )


@dataclass
class PPOConfig(_ActorCriticConfig):
    """RLHF-style token-level PPO (the paper's baseline), see ``agents/ppo.py``."""

    num_epochs: int = 4
    """Passes over each rollout (PPO reuses samples more than the others)."""
    gae_lambda: float = 0.95
    """λ of GAE, applied per token (across the actions of an episode as well)."""
    clip_range: float = 0.2
    """ε of the clipped ratio objective."""
    vf_coef: float = 0.5
    """Weight of the value loss on the shared backbone."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (0: the KL penalty already regularises)."""
    kl_coef: float = 0.05
    """Per-token KL(π‖π_ref) penalty added to the reward (same role and scale as ETPO's β)."""
    normalize_advantage: bool = True
    """Standardise advantages over the rollout."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        _check(self.clip_range > 0, f"clip_range must be > 0, got {self.clip_range}")
        _check(self.vf_coef >= 0 and self.ent_coef >= 0, "vf_coef and ent_coef must be >= 0")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class ReinforceConfig(_UpdateConfig):
    """REINFORCE with a baseline, see ``agents/reinforce.py``."""

    num_epochs: int = 1
    """REINFORCE is on-policy: one pass."""
    num_minibatches: int = 1
    """One gradient step per rollout."""
    baseline: str = "loo"
    """``loo``: leave-one-out mean of the other actions' returns in the rollout; ``running``: an exponential
    running mean of returns; ``none``."""
    baseline_decay: float = 0.9
    """Decay of the running-mean baseline."""
    kl_coef: float = 0.0
    """Optional per-token KL(π‖π_ref) penalty (exact over the vocabulary) added to the loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.baseline in ("loo", "running", "none"),
            f"baseline must be 'loo', 'running' or 'none', got {self.baseline!r}",
        )
        _check(0.0 <= self.baseline_decay < 1.0, f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class GRPOConfig(_UpdateConfig):
    """Group relative policy optimisation (DeepSeekMath, arXiv 2402.03300) and Dr. GRPO, see ``agents/grpo.py``.

    Names follow TRL's ``GRPOConfig`` where the concept is the same: ``loss_type``, ``scale_rewards``; TRL's
    ``epsilon`` is ``clip_range`` and its ``beta`` is ``kl_coef`` here (one name per concept across algorithms).
    """

    gamma: float = 0.0
    """Discount onto the episode's later actions. 0 (default): an action is scored by its own reward, as GRPO
    scores one completion per prompt. Above 0 the score is the return r_t + γ·G_{t+1} (reflection turns' rewards
    flow back to the first turn; an episode cut by the rollout's end is not bootstrapped)."""
    clip_range: float = 0.2
    """ε of the token-level clipped ratio objective (TRL's ``epsilon``, default 0.2)."""
    kl_coef: float = 0.0
    """β, the weight of the k3 estimate of KL(π‖π_ref) per token (DeepSeekMath eq. 4). 0 as TRL's ``beta``
    default (DeepSeek-R1 used 0.001); π_ref is then never evaluated."""
    loss_type: str = "grpo"
    """Aggregation of the per-token losses of a minibatch: ``grpo`` (the paper: mean over actions of each action's
    token mean), ``dr_grpo`` (sum over tokens / (actions × ``dr_grpo_length``): no length normalisation, Dr. GRPO
    arXiv 2503.20783) or ``dapo`` (sum over tokens / tokens, DAPO arXiv 2503.14476; TRL's current default)."""
    dr_grpo_length: int = 256
    """The constant L of ``dr_grpo``'s normaliser (TRL uses ``max_completion_length``; 256 is RunConfig's
    ``max_action_tokens`` default). Any constant only rescales the step size."""
    scale_rewards: bool = True
    """Divide group-centred rewards by the group's standard deviation (the paper). False is Dr. GRPO: the std
    favours groups that are nearly all right or all wrong (a difficulty bias)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.clip_range > 0, f"clip_range must be > 0, got {self.clip_range}")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")
        _check(
            self.loss_type in ("grpo", "dr_grpo", "dapo"),
            f"loss_type must be 'grpo', 'dr_grpo' or 'dapo', got {self.loss_type!r}",
        )
        _check(self.dr_grpo_length >= 1, f"dr_grpo_length must be >= 1 (tokens), got {self.dr_grpo_length}")


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning (filtered behaviour cloning on the policy's own best actions), the positive
    control, see ``agents/rft.py``. No ``gamma``: an action is kept or not by its own reward."""

    num_epochs: int = 2
    """Passes over the kept actions of each rollout."""
    num_minibatches: int = 2
    """Minibatches per epoch (split by kept actions)."""
    keep_fraction: float = 0.5
    """Share of the rollout's SUCCESSFUL actions kept for fine-tuning, the best by reward (ties at the cut are all
    kept): 0.5 keeps those at or above the successes' median, 1.0 every success (expert iteration)."""
    kl_coef: float = 0.0
    """Optional per-token KL(π‖π_ref) penalty (exact over the vocabulary) added to the cross-entropy."""

    def __post_init__(self) -> None:
        _check(self.num_epochs >= 1, f"num_epochs must be >= 1, got {self.num_epochs}")
        _check(self.num_minibatches >= 1, f"num_minibatches must be >= 1, got {self.num_minibatches}")
        _check(0.0 < self.keep_fraction <= 1.0, f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        _check(self.kl_coef >= 0, f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class BaseConfig:
    """The sampling-only floor agent: no learning, no settings."""

    def __post_init__(self) -> None:
        """Nothing to validate."""
