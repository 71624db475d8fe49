"""Data-parallel training over several processes through Hugging Face ``accelerate`` (DDP, or FSDP2 sharding).

Under ``accelerate launch -m etpo_agents.train ...`` every process (rank) runs the same loop on its own device:

* it collects rollouts from its OWN vector env (its own sandbox workers); env and sampler seeds are offset by
  ``rank * num_envs``, so sub-env ``i`` of rank ``r`` gets ``seed + r * num_envs + i``: together the ranks step
  the same envs as one process with ``world_size * num_envs`` sub-envs;
* the action budget splits across ranks: each update, every rank collects ``ceil(actions_per_rollout /
  world_size)`` actions (at least ``num_minibatches``, so every rank takes the same number of optimiser steps: a
  DDP all-reduce waits for all ranks), and ``total_steps`` counts the actions of ALL ranks (summed each update);
* gradients are reduced in ``backward`` (:meth:`etpo_agents.policy.Policy.distribute`), with the loss of each rank
  rescaled so that the result is the gradient of the mean over all ranks' tokens
  (:func:`etpo_agents.policy.apply_gradients`), the same update as one process on the combined batch;
* only rank 0 logs, shows the progress bar, writes checkpoints and runs the greedy evaluation.

Two ways to hold the model (``RunConfig.fsdp``):

* DDP (default): every rank keeps a full replica; ``accelerate`` wraps the Policy and all-reduces gradients.
* FSDP (``--fsdp``): PyTorch's FSDP2 ``fully_shard`` shards parameters, gradients and Adam states over the ranks
  (1/world_size each). ``accelerate`` still launches the processes, places devices and carries the reductions;
  the trainer applies ``fully_shard`` itself because rollouts need a scheme ``accelerate``'s FSDP wrapper does not
  offer: each rank samples a different number of tokens, so sampling and the no-grad passes run on parameters
  gathered once per pass (:meth:`etpo_agents.policy.Policy.full_parameters`), while the minibatch forwards/backwards
  run sharded in lock step. Launch it with the DDP configs plus ``--fsdp``; an ``accelerate`` config whose
  ``distributed_type`` is FSDP or DeepSpeed is refused with that advice.

A single process (plain ``python -m etpo_agents.train``, or ``accelerate launch`` with one process) never imports
``accelerate`` and behaves exactly as before (``--fsdp`` has no effect there).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job: rank, number of ranks and the ``accelerate.Accelerator``.

    The default is the single-process job (no accelerator).
    """

    rank: int = 0
    world_size: int = 1
    accelerator: Any = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, checkpoints and evaluates."""
        return self.rank == 0

    @property
    def device(self) -> str | None:
        """This rank's device (``cuda:<local rank>`` or ``cpu``); ``None`` keeps ``RunConfig.device``."""
        return str(self.accelerator.device) if self.accelerator is not None else None

    def seed_offset(self, num_envs: int) -> int:
        """Offset of this rank's env and sampler seeds: sub-envs of different ranks never share a seed."""
        return self.rank * num_envs

    def actions_per_rank(self, actions_per_rollout: int, remaining: int, min_actions: int) -> int:
        """Actions this rank collects for the next update: its share of ``min(actions_per_rollout, remaining)``.

        Args:
            actions_per_rollout: completed actions per update, over all ranks.
            remaining: actions left in the budget, over all ranks.
            min_actions: lower bound for several ranks (the algorithm's ``num_minibatches``: a rank with fewer
                actions would take fewer optimiser steps and leave the others waiting in the all-reduce).
        """
        share = math.ceil(min(actions_per_rollout, remaining) / self.world_size)
        return share if self.world_size == 1 else max(share, min_actions)

    def sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over the ranks (one all-reduce); unchanged for one process."""
        if self.world_size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, reduction="sum").tolist()

    def gather_object(self, value: Any) -> list[Any]:
        """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` for one process)."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        """Wait for every rank (e.g. before rank 0 reads what all ranks finished)."""
        if self.accelerator is None:
            return
        if self.accelerator.device.type == "cpu":
            # accelerate's wait_for_everyone passes device_ids=[local rank], which selects a GPU even for the gloo
            # ranks of a CPU job on a GPU machine (rank 1 of a 1-GPU box fails with "invalid device ordinal").
            torch.distributed.barrier()
        else:
            self.accelerator.wait_for_everyone()


def launch_local(function: Callable[..., Any], args: tuple = (), world_size: int = 2) -> None:
    """Run ``function(rank, *args)`` in ``world_size`` local processes wired for ``torch.distributed`` (rank,
    world size and a free loopback port in the environment, as a launcher sets them), and wait for all of them.

    For testing the distributed path on one machine (``setup("cpu")`` inside ``function`` joins a ``gloo`` group).
    ``function`` and ``args`` must be picklable (a module-level function).
    """
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_local_rank, args=(world_size, port, function, args), nprocs=world_size, join=True)


def _local_rank(rank: int, world_size: int, port: int, function: Callable[..., Any], args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    function(rank, *args)


def launched_world_size() -> int:
    """Number of processes of the job from the launcher's environment (``WORLD_SIZE``; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> Ranks:
    """This process's :class:`Ranks`; creates the ``Accelerator`` (and process group) only for several processes.

    Args:
        device: ``RunConfig.device``; ``cpu`` keeps a multi-process job on CPU (``gloo``), anything else lets
            ``accelerate`` give each rank its GPU (``nccl``).

    Raises:
        NotImplementedError: the accelerate config asks for its own FSDP, DeepSpeed or another engine.
    """
    if launched_world_size() <= 1:
        return Ranks()
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    accelerator = Accelerator(cpu=device == "cpu")
    data_parallel = (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU, DistributedType.NO)
    if accelerator.distributed_type not in data_parallel:
        raise NotImplementedError(
            f"accelerate's distributed type {accelerator.distributed_type} is not supported (see "
            "agents/distributed.py); use configs/accelerate/single_node_multi_gpu.yaml or multi_node.yaml, and add "
            "--fsdp to shard the model with FSDP2"
        )
    return Ranks(accelerator.process_index, accelerator.num_processes, accelerator)
