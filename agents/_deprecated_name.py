"""The deprecated import name ``agents`` (until etpo-gym 0.3): ``agents.X`` is ``etpo_agents.X``, the same module.

Only a checkout's root can import ``agents`` (the folder is on ``sys.path`` as the working directory); an installed
etpo-gym provides ``etpo_agents`` alone, so it never shadows another distribution's ``agents`` package.
``python -m agents.train`` runs ``etpo_agents.train``'s code as ``__main__``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

OLD, NEW = "agents", "etpo_agents"
MESSAGE = (
    "the import name 'agents' is deprecated and will be removed in etpo-gym 0.3: use 'etpo_agents' "
    "(e.g. `python -m etpo_agents.train`, `from etpo_agents import load_policy`); 'agents' collides with other "
    "packages such as the OpenAI Agents SDK"
)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``agents.X`` to the already-importable ``etpo_agents.X`` module object."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec:
        if not fullname.startswith(OLD + "."):
            return None
        new_spec = importlib.util.find_spec(NEW + fullname[len(OLD) :])
        if new_spec is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=new_spec.origin, is_package=False)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(NEW + spec.name[len(OLD) :])
        self._specs[module.__name__] = module.__spec__  # the import system overwrites it with the alias's spec
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module already ran under its new name: only give it back its own spec."""
        module.__spec__ = self._specs.pop(module.__name__)

    def get_code(self, fullname: str) -> CodeType | None:
        """For ``python -m agents.X``: the code of ``etpo_agents.X``."""
        new_name = NEW + fullname[len(OLD) :]
        return importlib.util.find_spec(new_name).loader.get_code(new_name)


def alias_old_name() -> None:
    """Warn once, then make ``agents`` and every ``agents.X`` the ``etpo_agents`` modules."""
    warnings.warn(MESSAGE, FutureWarning, stacklevel=3)
    sys.modules[OLD] = importlib.import_module(NEW)
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
