"""etpo-tiny-coder: the project's embedded default policy, a small Llama-style code model trained here."""
