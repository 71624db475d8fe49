"""etpo-gym: the ETPO paper's data-science code-generation task as Gymnasium environments.

Importing this package registers the environments; it does not import torch.
"""

from gymnasium.envs.registration import register

from etpo_gym.datasets import BUNDLED_DATASETS, list_datasets, load_dataset

__version__ = "0.2.0"
__all__ = ["list_datasets", "load_dataset", "BUNDLED_DATASETS", "__version__"]

register(id="ETPO-DataSci-v0", entry_point="etpo_gym.env:DataSciTokenEnv")
register(id="ETPO-DataSciText-v0", entry_point="etpo_gym.env:DataSciTextEnv")
for _name in BUNDLED_DATASETS:
    _camel = "".join(part.capitalize() for part in _name.split("_"))
    register(id=f"ETPO-DataSci-{_camel}-v0", entry_point="etpo_gym.env:DataSciTokenEnv", kwargs={"dataset": _name})
register(id="ETPO-TokenCredit-v0", entry_point="etpo_gym.token_credit:TokenCreditEnv")
