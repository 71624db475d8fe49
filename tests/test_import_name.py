"""The import name ``etpo_agents`` does not collide with another distribution's top-level ``agents`` package (the
OpenAI Agents SDK installs one): with a foreign ``agents`` first on the path, the project's imports, its CLI and its
tests still work; from a checkout's root the deprecated ``agents`` still aliases the same modules."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def foreign_agents_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH starts with a foreign top-level ``agents`` package that cannot be imported."""
    package = tmp_path / "foreign" / "agents"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("foreign agents")\n')
    path = os.pathsep.join(filter(None, [str(tmp_path / "foreign"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_foreign_agents_package_first_on_the_path_breaks_nothing(tmp_path, foreign_agents_env):
    work = tmp_path / "elsewhere"  # not the repository root: the checkout's agents/ is not on the path
    work.mkdir()
    probe = _run([sys.executable, "-c", "import agents"], work, foreign_agents_env)
    assert "foreign agents" in probe.stderr  # the foreign package really is what `agents` resolves to

    imports = _run([sys.executable, "-c", "import etpo_agents, etpo_agents.train, etpo_agents.registry"], work,
                   foreign_agents_env)  # fmt: skip
    assert imports.returncode == 0, imports.stderr

    help_text = _run([sys.executable, "-m", "etpo_agents.train", "--help"], work, foreign_agents_env)
    assert help_text.returncode == 0 and "usage: python -m etpo_agents.train" in help_text.stdout, help_text.stderr

    tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  str(ROOT / "tests" / "agents" / "test_etpo_math.py"), "-k", "lambda or critic_loss"], work, foreign_agents_env)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-2000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout


def test_deprecated_name_from_the_checkout_root_aliases_the_same_modules():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import agents, agents.train\n"
        "import etpo_agents.train\n"
        "assert agents.train is etpo_agents.train, 'different module objects'\n"
        "assert any(issubclass(w.category, FutureWarning) and 'etpo_agents' in str(w.message) for w in caught)\n"
    )
    result = _run([sys.executable, "-c", code], ROOT, dict(os.environ))
    assert result.returncode == 0, result.stderr
