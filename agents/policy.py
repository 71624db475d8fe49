"""The policy: a Hugging Face causal LM, its reference policy π_ref, and the critic heads on its backbone.

One module holds everything the algorithms need, all on ONE shared backbone:

* ``model``: the causal LM (optionally wrapped with LoRA adapters through ``peft``); π(w|context) =
  softmax(lm_head(h)), where h is the backbone's last hidden state.
* π_ref, the initial model. With LoRA it is the same base with the adapters disabled (no copy of the weights).
  Without LoRA a frozen full copy is kept: a few MB for the embedded tiny model, but for billion-parameter
  models use LoRA.
* ``q_head`` + ``q_value_head`` (ETPO): the token-level soft Q over the whole vocabulary as a π-centred dueling
  head, Q(x, w) = V(x) + A(x, w) − Σ_w' π(w'|x)·A(x, w'), with the scalar V = ``q_value_head(h)`` and the advantage
  A = ``q_head(h)`` (a bias-free linear map hidden → vocabulary, or a rank-r factorisation), h the backbone's last
  hidden state and π the current policy (held fixed in the centring). Both start at exactly zero: Q ≡ 0 is on the
  reward scale and π* ∝ π_ref·exp(Q/β) = π_ref, so training starts at a fixed point (the official code initialises
  its critic as a copy of the LM, whose logits are O(10) and unrelated to rewards). Why centred, not a plain
  linear head Q = W·h + b (kept as ``q_parametrisation="linear"`` for the ablation): there, rows of never-sampled
  tokens keep Q = 0 while the trained rows move to the reward scale, and the bias is one value per token shared
  by every position. Centred on π, Σ_w π(w)·Q(x, w) = V(x) exactly, an untried token's Q follows V(x) (its A
  gets no gradient and stays 0), and nothing per token is shared across positions. It does not by itself stop
  the drift toward early EOS that issue 13 reported (replays in ``benchmarks/results/etpo_critic.md``: every
  head drifts with one-step targets; the soft TD(λ) targets cut the drift 3-4×).
* ``target_q_head`` / ``target_q_value_head``: the Polyak-averaged target Q̄ (copies of both heads; Q̄ is centred on
  the current π). They read the online backbone's hidden states: DEVIATION from the official code, which keeps a
  full target model; copying the heads keeps the memory at one backbone.
* ``value_head`` (PPO): a scalar V(s) head, zero-initialised.

Device ``auto`` picks CUDA when available and runs forwards under bf16 autocast there; losses are computed in
float32. Generation keeps the KV cache, the logits and the sampled token's log-probability on the device; only the
token id crosses to the host (the env needs it).

Distributed training (``agents/distributed.py``), two ways:

* DDP: ``accelerate`` wraps the whole Policy, and every forward that builds a graph goes through that wrapper
  (:meth:`Policy.hidden_states`), so DDP all-reduces the gradients of the backbone and the heads in ``backward``.
  Sampling and the no-grad forwards of the targets use the local module (no collective, so ranks may generate
  different numbers of tokens).
* FSDP (``shard=True``, PyTorch's FSDP2 ``fully_shard``): every decoder layer and the Policy itself are sharded
  over the ranks, so parameters, gradients and optimiser state take 1/world_size of the memory. A sharded forward
  all-gathers its layer's parameters, so all ranks must run the same forwards in lock step; the graph-building
  minibatch forwards do (every rank takes the same number of optimiser steps), but sampling and the batch-wide
  no-grad passes do not (each rank has its own episodes). Those run inside :meth:`Policy.full_parameters`: the
  parameters are gathered ONCE, every rank runs as many local forwards as it needs, and they are resharded after
  (the scheme of TRL's ``unwrap_model_for_generation``; sampling leaves a π_ref copy's layers sharded). The peak
  is therefore one model's full parameters plus the sharded training state: FSDP here is for models whose
  parameters fit one device but whose gradients and Adam states do not.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

EMBEDDED_MODEL = "etpo-tiny-coder"
"""Name of the policy packaged under ``agents/assets/``."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _embedded_path() -> Path:
    return Path(str(importlib.resources.files("etpo_agents") / "assets" / EMBEDDED_MODEL))


def load_policy(
    name_or_path: str = EMBEDDED_MODEL, local_files_only: bool = True, torch_dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: ``"etpo-tiny-coder"`` (the packaged model), a local directory, or a hub id.
        local_files_only: for hub ids, only use the local cache (the default; nothing is downloaded).
        torch_dtype: weights dtype; ``None`` keeps the checkpoint's.

    Returns:
        ``(model, tokenizer)``; the tokenizer has a pad token (EOS when it had none).

    Raises:
        FileNotFoundError: the embedded model is not installed, a local path does not exist, a name is a near-typo
            of the embedded model's, or an offline hub id is not cached (:func:`check_model`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model(name_or_path, local_files_only)
    if name_or_path == EMBEDDED_MODEL:
        name_or_path = str(_embedded_path())
    is_local = os.path.isdir(name_or_path)
    kwargs: dict[str, Any] = {"local_files_only": local_files_only and not is_local}
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=kwargs["local_files_only"])
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as error:
        if is_local or not local_files_only:
            raise
        raise FileNotFoundError(_not_cached_message(name_or_path)) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def check_model(name_or_path: str, local_files_only: bool = True) -> None:
    """Check, without loading weights, that :func:`load_policy` can find ``name_or_path``.

    Three cases get three messages: a name that looks like a path (it starts with ``.``, ``/`` or ``~``, or has
    more than one ``/``, or a ``\\``: a hub id is ``name`` or ``owner/name``) but is no directory; a near-typo of
    the embedded model's name (``etpo-tiny-coders``); a hub id that is not in the local cache while downloads are
    off.

    Raises:
        FileNotFoundError: with a message saying which case and what to do.
    """
    import difflib

    if name_or_path == EMBEDDED_MODEL:
        if not (_embedded_path() / "config.json").exists():
            raise FileNotFoundError(f"the embedded model is missing: expected {_embedded_path()}/config.json")
        return
    if os.path.isdir(name_or_path):
        return
    # A hub id is "name" or "owner/name": one "/" at most, never leading.
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_like_path or os.path.exists(name_or_path):
        raise FileNotFoundError(
            f"model path {name_or_path!r} is not a directory (a local model is a folder with config.json and the "
            f"weights); the packaged model is {EMBEDDED_MODEL!r}"
        )
    if difflib.get_close_matches(name_or_path.lower(), [EMBEDDED_MODEL], n=1, cutoff=0.75):
        raise FileNotFoundError(f"unknown model {name_or_path!r}; did you mean {EMBEDDED_MODEL!r} (packaged)?")
    if local_files_only and not _hub_cached(name_or_path):
        raise FileNotFoundError(_not_cached_message(name_or_path))


def _hub_cached(repo_id: str) -> bool:
    """Whether the hub model ``repo_id`` has its ``config.json`` in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id: transformers' own error will say so
        return True


def _not_cached_message(repo_id: str) -> str:
    return (
        f"model {repo_id!r} is not a local folder, nor in the local Hugging Face cache, and downloads are off; "
        f"download it first with `hf download {repo_id}` (the huggingface_hub CLI), or allow downloads "
        "(local_files_only=False, or --allow-download on the command line)"
    )


def _base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (``model`` itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kwarg(model: nn.Module) -> str:
    """Name of the KV-cache argument: ``cache`` in transformers 5, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(_base_model(model).forward).parameters else "past_key_values"


class Policy(nn.Module):
    """Causal LM + π_ref + optional soft-Q head (with Polyak target) and value head, on one backbone.

    Args:
        model: a Hugging Face causal LM (already on any device; moved to ``device``).
        tokenizer: its tokenizer.
        q_head: build the ETPO soft-Q head (and its target copy).
        value_head: build the PPO value head.
        use_lora: wrap ``model`` with LoRA adapters; π_ref is then the adapter-disabled base.
        lora_r, lora_alpha, lora_target_modules: LoRA settings.
        q_rank: ``None`` for a full hidden×vocab Q head, else a rank-r factorisation (for 100k+ vocabularies).
        q_parametrisation: ``"dueling"`` (the π-centred dueling head of the module docstring) or ``"linear"``
            (Q = W·h + b, the earlier head, kept for the ablation).
        device: ``auto`` or a torch device string.
        gradient_checkpointing: recompute the decoder layers' activations in backward (less memory, ~30% more
            compute); generation and no-grad forwards are unaffected.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        q_head: bool = False,
        value_head: bool = False,
        use_lora: bool = False,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_target_modules: list[str] | None = None,
        q_rank: int | None = None,
        q_parametrisation: str = "dueling",
        device: str = "auto",
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.device_ = resolve_device(device)
        self.tokenizer = tokenizer
        model.config.use_cache = True
        if use_lora:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules=lora_target_modules, lora_dropout=0.0)
            model = get_peft_model(model, lora)
            self.ref_model = None
        else:
            self.ref_model = copy.deepcopy(model).requires_grad_(False)
        self.model = model
        hidden, vocab = model.config.get_text_config().hidden_size, model.get_output_embeddings().out_features
        self.q_head = self.target_q_head = self.value_head = None
        self.q_value_head = self.target_q_value_head = None
        if q_parametrisation not in ("dueling", "linear"):
            raise ValueError(f"q_parametrisation must be 'dueling' or 'linear', got {q_parametrisation!r}")
        if q_head:
            dueling = q_parametrisation == "dueling"
            self.q_head = _zero_head(hidden, vocab, q_rank, bias=not dueling)  # A(x, ·), or Q itself when linear
            self.target_q_head = copy.deepcopy(self.q_head).requires_grad_(False)
            if dueling:
                self.q_value_head = _zero_head(hidden, 1, None)  # V(x)
                self.target_q_value_head = copy.deepcopy(self.q_value_head).requires_grad_(False)
        if value_head:
            self.value_head = _zero_head(hidden, 1, None)
        self._cache_kwarg = _cache_kwarg(model)
        self.accelerator: Any = None
        self._engine: nn.Module | None = None
        self._gathered: bool | None = None  # inside full_parameters: whether π_ref's layers were gathered too
        self.to(self.device_)
        self.eval()  # dropout off everywhere: π is a deterministic function of the weights (rollout == update)
        if gradient_checkpointing:
            _enable_gradient_checkpointing(model)

    def distribute(self, accelerator: Any, shard: bool = False) -> None:
        """Train through ``accelerate``: wrap this module for graph-building forwards (DDP), or shard it in place
        (FSDP2, ``shard=True``), and let :func:`apply_gradients` reduce across ranks through ``accelerator``.

        The Policy places itself (``device_placement=False``): ``accelerator.device`` is the same device under
        ``accelerate launch``, and a single process keeps ``RunConfig.device``. Call before building the optimiser
        (sharding replaces the parameters with sharded ones).
        """
        self.accelerator = accelerator
        if shard:
            _fully_shard(self, accelerator.device, accelerator.num_processes)
            engine = self
        else:
            engine = accelerator.prepare_model(self, device_placement=False)
        # Not registered as a submodule (the DDP wrapper contains this module): a plain attribute.
        object.__setattr__(self, "_engine", engine)

    @property
    def sharded(self) -> bool:
        """Whether :meth:`distribute` sharded this Policy with FSDP."""
        from torch.distributed.fsdp import FSDPModule

        return isinstance(self, FSDPModule)

    @contextmanager
    def full_parameters(self, reference: bool = True):
        """Hold the full (unsharded) parameters on every rank for local forwards: a no-op unless sharded.

        Sharded: ALL ranks must enter together (one all-gather per sharded module on entry); inside, each rank may
        run any number of forwards with no communication; on exit the parameters are resharded. Re-entrant.

        Args:
            reference: also gather the decoder layers of a frozen π_ref copy (not needed for sampling, which
                then holds one gathered model, not two).

        Raises:
            RuntimeError: entered with ``reference=True`` inside a ``reference=False`` block.
        """
        if not self.sharded:
            yield
            return
        if self._gathered is not None:
            if reference and not self._gathered:
                raise RuntimeError("full_parameters(reference=True) inside a full_parameters(reference=False) block")
            yield
            return
        from torch.distributed.fsdp import FSDPModule

        skipped = set(self.ref_model.modules()) if self.ref_model is not None and not reference else set()
        layers = [m for m in self.modules() if m is not self and isinstance(m, FSDPModule) and m not in skipped]
        for layer in layers:
            layer.set_reshard_after_forward(False)
        for module in (self, *layers):
            module.unshard()
        self._gathered = reference
        try:
            yield
        finally:
            self._gathered = None
            for module in (self, *layers):
                module.reshard()
            for layer in layers:
                layer.set_reshard_after_forward(True)

    # ----------------------------------------------------------------------------------------------- forwards
    def autocast(self):
        """bf16 autocast on CUDA, nothing elsewhere."""
        if self.device_.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, S, H) of right-padded sequences (B, S); the entry point DDP wraps."""
        with self.autocast():
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1
            )
        return out.hidden_states[-1]

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, S, H); with grad through the distributed wrapper (gradient all-reduce)."""
        module = self._engine if self._engine is not None and torch.is_grad_enabled() else self
        return module(input_ids, attention_mask)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Untempered policy logits (..., V) in float32 from hidden states (..., H)."""
        with self.autocast():
            return self.model.get_output_embeddings()(hidden).float()

    def q_values(self, hidden: torch.Tensor, logits: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Soft Q(x, w) for every token w: V(x) + A(x, w) − Σ_w' π(w'|x)·A(x, w') (module docstring).

        Args:
            hidden: (..., H) backbone states at the decision rows x.
            logits: (..., V) untempered policy logits at the same rows; π = softmax(logits) is detached (the
                centring is part of Q's definition, not a path for the critic loss to move π).

        Gradient: ∂Q(x, w)/∂A(x, w) = 1 − π(w|x) and ∂Q(x, w)/∂A(x, u) = 0 for u ≠ w, so a never-sampled token's
        row gets no gradient at all (its A stays 0 and its Q follows V(x)).
            target: use the Polyak copies (Q̄).

        Returns:
            (..., V) float32. With ``q_parametrisation="linear"``: q_head(h), ``logits`` unused.
        """
        head = self.target_q_head if target else self.q_head
        if head is None:
            raise RuntimeError("this Policy has no q_head; build it with q_head=True (ETPO)")
        advantages = head(hidden.float())  # (..., V)
        value_head = self.target_q_value_head if target else self.q_value_head
        if value_head is None:
            return advantages
        probs = torch.softmax(logits.detach().float(), -1)  # (..., V)
        # Value: V + A − Σ π·A. Gradient of Q(x, w) w.r.t. A: (1 − π(w|x)) on row w only, as through the centring
        # for the row itself, but none to the other rows: their −π(u)·δ·h would be tiny and consistent, which Adam
        # rescales to full steps, so untried rows would drift (measured) instead of leaving Q(x, u) at V(x).
        own = probs * (advantages - advantages.detach())  # (..., V): carries the −π(w) share of row w's own term
        baseline = (probs * advantages).sum(-1, keepdim=True).detach()  # (..., 1)
        return value_head(hidden.float()) + advantages - baseline - own

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        """State values V(s), (...,) float32."""
        if self.value_head is None:
            raise RuntimeError("this Policy has no value_head; build it with value_head=True (PPO)")
        return self.value_head(hidden.float()).squeeze(-1)

    @torch.no_grad()
    def ref_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """π_ref logits (R, V) float32 at the (sequence, position) pairs ``rows`` of a (B, S) batch."""
        return self.ref_logits_from_hidden(self.ref_hidden_states(input_ids, attention_mask, rows))

    @torch.no_grad()
    def ref_hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """π_ref's last hidden states (R, H) at the (sequence, position) pairs ``rows`` of a (B, S) batch."""
        with self._reference() as ref:
            with self.autocast():
                out = ref(
                    input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1
                )
                return out.hidden_states[-1][rows]

    @torch.no_grad()
    def ref_logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """π_ref logits (R, V) float32 from π_ref hidden states (R, H)."""
        with self._reference() as ref:
            with self.autocast():
                return ref.get_output_embeddings()(hidden).float()

    @contextmanager
    def _reference(self):
        if self.ref_model is not None:
            yield self.ref_model
        else:
            with self.model.disable_adapter():
                yield self.model

    # --------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def start(self, prompt_ids: list[int]) -> tuple[torch.Tensor, Any]:
        """Encode a prompt; returns the next-token logits (V,) float32 and the KV cache."""
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device_)
        with self.autocast():
            out = self.model(input_ids=ids, use_cache=True)
        return out.logits[0, -1].float(), _cache_of(out)

    @torch.no_grad()
    def advance(self, token: int, cache: Any) -> tuple[torch.Tensor, Any]:
        """One incremental forward of ``token`` on top of ``cache``; returns next-token logits (V,) and cache."""
        ids = torch.tensor([[token]], dtype=torch.long, device=self.device_)
        with self.autocast():
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_kwarg: cache})
        return out.logits[0, -1].float(), _cache_of(out)

    # ------------------------------------------------------------------------------------------ parameters
    def policy_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of π (LoRA adapters, or the whole LM)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the critic / value heads."""
        heads = [h for h in (self.q_head, self.q_value_head, self.value_head) if h is not None]
        return [p for h in heads for p in h.parameters()]

    @torch.no_grad()
    def polyak_update(self, tau: float) -> None:
        """Q̄ ← (1 − τ)·Q̄ + τ·Q on every parameter Q̄ reads: the advantage head and the V(x) head."""
        pairs = [(self.target_q_head, self.q_head), (self.target_q_value_head, self.q_value_head)]
        for target_head, online_head in pairs:
            if online_head is None:
                continue
            for target, online in zip(target_head.parameters(), online_head.parameters(), strict=True):
                target.lerp_(online, tau)

    def checkpoint_state(self, optimizer: torch.optim.Optimizer | None) -> tuple[dict[str, Any], dict | None]:
        """Full state dicts of the trainable weights (plus the target head; π_ref is rebuilt) and the optimiser.

        Sharded: a collective (every rank must call it); the full tensors are gathered to rank 0's CPU, and the
        other ranks get empty dicts (only rank 0 writes checkpoints).
        """
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        options = self._state_dict_options()
        weights = get_model_state_dict(self, options=options)
        weights = {k: v for k, v in weights.items() if not k.startswith("ref_model.")}
        return weights, get_optimizer_state_dict(self, optimizer, options=options) if optimizer else None

    def load_checkpoint_state(
        self, weights: dict[str, Any], optimizer: torch.optim.Optimizer | None = None, optimizer_state: Any = None
    ) -> None:
        """Inverse of :meth:`checkpoint_state` (every rank loads the full state and keeps its shard).

        Raises:
            ValueError: the weights do not match this policy (another model, or other heads).
        """
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        options = self._state_dict_options(strict=False)
        missing, unexpected = set_model_state_dict(self, weights, options=options)
        missing = [k for k in missing if not k.startswith("ref_model.")]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not match the policy: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if optimizer is not None and optimizer_state is not None:
            set_optimizer_state_dict(self, optimizer, optimizer_state, options=options)

    def _state_dict_options(self, strict: bool = True) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=self.sharded, cpu_offload=self.sharded, strict=strict)


def _fully_shard(policy: Policy, device: torch.device, world_size: int) -> None:
    """FSDP2 in place: each decoder layer (the model's ``_no_split_modules`` classes, in π and in a π_ref copy)
    is one sharded unit, the rest of the Policy (embeddings, LM head, Q/value heads, targets) the root unit.

    The root keeps its parameters gathered after a forward (``reshard_after_forward=False``) because the heads run
    on the hidden states outside that forward; they are resharded after ``backward``.

    Raises:
        ValueError: the model does not name its decoder layer classes (``_no_split_modules``).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    layer_classes = set(getattr(_base_model(policy.model), "_no_split_modules", None) or ())
    if not layer_classes:
        raise ValueError(f"{type(_base_model(policy.model)).__name__} does not list its decoder layers "
                         "(_no_split_modules), so FSDP cannot shard it layer by layer; train it with DDP")  # fmt: skip
    mesh = init_device_mesh(device.type, (world_size,))
    for module in list(policy.modules()):
        if type(module).__name__ in layer_classes:
            fully_shard(module, mesh=mesh)
    fully_shard(policy, mesh=mesh, reshard_after_forward=False)
    with torch.no_grad():  # the first forward through the root makes it FSDP's root (before any local forward)
        ids = torch.zeros((1, 1), dtype=torch.long, device=device)
        policy(ids, torch.ones_like(ids))
    policy.reshard()  # the root stayed gathered: reshard, or ``parameters()`` would list the gathered copies


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    """Checkpoint the decoder layers while keeping dropout off.

    Transformers checkpoints a layer only when that layer's ``training`` flag is set (and grad is enabled); the
    flag is set on the checkpointed layers alone, not recursively, so their dropout submodules stay in eval mode.
    """
    base = _base_model(model)
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for module in base.modules():
        if getattr(module, "gradient_checkpointing", False):
            module.training = True


def _cache_of(out: Any) -> Any:
    """The KV cache of a model output (``cache`` in transformers 5, ``past_key_values`` before)."""
    return out["cache"] if "cache" in out else out.past_key_values


def _zero_head(hidden: int, out: int, rank: int | None, bias: bool = True) -> nn.Module:
    """Linear head whose output is exactly zero at initialisation (the last layer's weights and bias are 0).

    ``bias=False`` for the dueling advantage head: a bias would be one value per token shared by every position.
    """
    if rank is None:
        head = nn.Linear(hidden, out, bias=bias)
        last = head
    else:
        last = nn.Linear(rank, out, bias=bias)
        head = nn.Sequential(nn.Linear(hidden, rank, bias=False), last)
    nn.init.zeros_(last.weight)
    if bias:
        nn.init.zeros_(last.bias)
    return head


def require_single_process(policy: Policy, name: str) -> None:
    """Refuse a multi-process job for an update whose ranks would take different numbers of optimiser steps.

    GRPO and RFT train on a data-dependent subset of each rank's actions (its own groups / kept actions), so ranks
    would step different numbers of times and wait forever in the gradient reduction.

    Raises:
        ValueError: ``policy`` runs under ``accelerate launch`` with more than one process.
    """
    if policy.accelerator is not None and policy.accelerator.num_processes > 1:
        raise ValueError(
            f"{name} runs in one process only; launch it without `accelerate launch` (docs/agents_grpo_rft.md)"
        )


def apply_gradients(
    loss: torch.Tensor,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    name: str,
    num_tokens: int | None = None,
) -> float:
    """Backward, clip, step. Returns the pre-clip gradient norm.

    Reduction across ranks: ``loss`` is a mean over this rank's ``num_tokens`` sampled tokens. DDP (all-reduce)
    and FSDP (reduce-scatter) average the ranks' gradients, so the loss is first multiplied by
    ``num_tokens · world_size / global_num_tokens``: the averaged gradient is then the gradient of the mean over
    ALL ranks' tokens, the same as one process computing the loss on the combined batch. One all-reduce per step
    carries the token count and a non-finite flag, so every rank raises together. Single process, or
    ``num_tokens=None``: the loss is used as is.

    Raises:
        FloatingPointError: the loss or the gradient norm is NaN/inf (names the loss; the caller adds the step).
    """
    accelerator = policy.accelerator
    non_finite = float(not torch.isfinite(loss))
    if accelerator is not None and accelerator.num_processes > 1:
        counts = torch.tensor([float(num_tokens or 0), non_finite], device=loss.device)
        total_tokens, non_finite = accelerator.reduce(counts, reduction="sum").tolist()
        if num_tokens is not None:
            loss = loss * (num_tokens * accelerator.num_processes / max(total_tokens, 1.0))
    if non_finite:
        raise FloatingPointError(f"{name} loss is {float(loss.detach())}")
    optimizer.zero_grad(set_to_none=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if accelerator is not None:
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, max_grad_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor over the shards
            grad_norm = grad_norm.full_tensor()
    else:
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(f"{name} gradient norm is {float(grad_norm)}")
    optimizer.step()
    return float(grad_norm)
