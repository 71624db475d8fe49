"""Token-level RL agents for the ETPO envs: ETPO, PPO, REINFORCE and a sampling-only base agent.

``load_policy(name_or_path)`` returns ``(model, tokenizer)``; ``"etpo-tiny-coder"`` is the packaged model.
Training: ``python -m agents.train --help`` or ``agents.train.train(RunConfig(...))``.
"""

from agents.policy import EMBEDDED_MODEL, load_policy

__all__ = ["EMBEDDED_MODEL", "load_policy"]
