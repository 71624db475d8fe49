"""Token-level RL agents for the ETPO envs: ETPO, PPO, REINFORCE, GRPO and a sampling-only base agent.

The folder is ``agents/``; the import name is ``etpo_agents`` (a top-level ``agents`` would collide with other
packages', e.g. the OpenAI Agents SDK's). ``load_policy(name_or_path)`` returns ``(model, tokenizer)``;
``"etpo-tiny-coder"`` is the packaged model. Training: ``python -m etpo_agents.train --help`` or
``etpo_agents.train.train(RunConfig(...))``.
"""

if __name__ == "agents":  # the old import name, reachable from a checkout's root: alias it for one release
    from etpo_agents._deprecated_name import alias_old_name

    alias_old_name()
else:
    from etpo_agents.policy import EMBEDDED_MODEL, load_policy

    __all__ = ["EMBEDDED_MODEL", "load_policy"]
