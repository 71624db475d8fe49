"""The two command lines (``python -m etpo_agents.train``, ``benchmarks/compare.py``) as a new user meets them:
help on every option, one-line usage errors with suggestions and no folder left behind, your own CSV with
``--target``, the deprecated ``--total-steps``, SB3 agents, the model messages of ``load_policy``, the checkpoint."""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from etpo_agents import cli, train
from etpo_agents.policy import check_model, load_policy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import compare  # noqa: E402


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("build", [train.build_parser, compare.build_parser], ids=["train", "compare"])
def test_every_option_has_help_and_shows_its_default(build):
    parser = build()
    formatter = cli.HelpFormatter(parser.prog)
    for action in _options(parser):
        assert action.help and action.help.strip(), action.option_strings
        assert "(default:" in formatter._get_help_string(action), action.option_strings


def test_train_usage_names_the_module_and_algo_arg_lists_the_fields():
    parser = train.build_parser()
    assert parser.format_usage().startswith("usage: python -m etpo_agents.train")
    algo_arg = next(a for a in parser._actions if "--algo-arg" in a.option_strings)
    for field in ("beta", "tau", "clip_range", "gae_lambda", "baseline", "n_steps"):
        assert field in algo_arg.help, field


def _csv(tmp_path: Path, rows: int = 120) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    frame = pd.DataFrame({"f1": x[:, 0], "f2": x[:, 1], "outcome": (x[:, 0] + rng.normal(size=rows) > 0).astype(int)})
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "etpoo"], "unknown --algo 'etpoo'. Did you mean 'etpo'?"),
        (["--dataset", "pharyngtis"], "Did you mean 'pharyngitis'?"),
        (["--dataset", "no_such_file.csv", "--target", "y"], "does not exist"),
        (["--dataset", "CSV"], "needs target=<column name>"),
        (["--dataset", "pharyngitis", "--target", "age"], "target='age' was given with the named dataset"),
        (["--model", "etpo-tiny-codr"], "did you mean 'etpo-tiny-coder'"),
        (["--model", "./no/such/model"], "is not a directory"),
        (["--max-turns", "0"], "max_turns must be >= 1"),
        (["--total-actions", "0"], "--total-actions must be >= 1"),
        (["--temperature", "0"], "temperature 0 (greedy) only suits the base agent"),
        (["--env", "ETPO-DataSci-V0"], "Did you mean 'ETPO-DataSci-v0'"),
        (["--env", "ETPO-DataSciText-v0"], "the agents train on a token-level env"),
        (["--algo-arg", "bta=0.1"], "Did you mean 'beta'"),
        (["--algo-arg", "beta=-1"], "beta must be > 0"),
        (["--algo-arg", "beta"], "expected NAME=VALUE"),
        (["--algo-arg", "critic_backbone_grad=maybe"], "expected true or false"),
        (["--prompt-style", "fancy"], "invalid choice"),
        (["--algo", "sb3-ppo", "--temperature", "0.5"], "--temperature does not apply to sb3-ppo"),
        (["--algo", "sb3-ppo", "--algo-arg", "n_step=8"], "Did you mean 'n_steps'"),
        (["--max-action-tokens", "2000"], "--max-action-tokens must be <"),
    ],
)
def test_train_user_mistakes_are_one_line_usage_errors(argv, message, tmp_path, capsys):
    argv = [str(_csv(tmp_path)) if item == "CSV" else item for item in argv]
    output_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--output-dir", str(output_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m etpo_agents.train: error: ") and "Traceback" not in err
    assert not output_dir.exists()


def test_dataset_names_are_normalised_and_total_steps_is_a_deprecated_alias():
    run, _ = train.parse_args(["--dataset", "KidneyStone", "Pharyngitis", "--total-actions", "3"])
    assert run.dataset == ["kidney_stone", "pharyngitis"] and run.total_steps == 3
    with pytest.warns(FutureWarning, match="--total-steps is deprecated.*--total-actions"):
        run, _ = train.parse_args(["--total-steps", "5"])
    assert run.total_steps == 5


def test_own_csv_options_reach_the_env(tmp_path):
    path = _csv(tmp_path)
    run, _ = train.parse_args(["--dataset", str(path), "--target", "outcome", "--description", "Who recovers.",
                               "--dataset-name", "recovery"])  # fmt: skip
    assert run.dataset == str(path)
    assert run.env_kwargs == {"target": "outcome", "description": "Who recovers.", "dataset_name": "recovery"}


def test_sb3_algorithms_parse_their_own_arguments():
    run, algo_kwargs = train.parse_args(["--algo", "sb3-a2c", "--algo-arg", "n_steps=16", "--algo-arg", "gamma=1.0"])
    assert run.algo == "sb3-a2c" and algo_kwargs == {"n_steps": 16, "gamma": 1.0}


def test_failed_run_removes_the_folder_it_created(tmp_path, monkeypatch):
    def failing_train(run, algo_config):
        os.makedirs(os.path.join(run.output_dir, "tb"))
        raise RuntimeError("boom")

    monkeypatch.setattr(train, "train", failing_train)
    output_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        train.main(["--output-dir", str(output_dir), "--total-actions", "1"])
    assert not output_dir.exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    cli.remove_if_empty(str(tmp_path / "kept"))  # a folder with a file is never removed
    assert (tmp_path / "kept" / "notes.txt").exists()


def test_train_cli_trains_on_a_csv_with_target_and_checkpoints_no_reference_weights(tmp_path, capsys):
    path = _csv(tmp_path)
    output_dir = tmp_path / "run"
    train.main(["--algo", "etpo", "--dataset", str(path), "--target", "outcome", "--dataset-name", "recovery",
                "--total-actions", "2", "--actions-per-rollout", "2", "--max-action-tokens", "24",
                "--algo-arg", "num_minibatches=1", "--no-progress", "--no-eval", "--device", "cpu",
                "--output-dir", str(output_dir)])  # fmt: skip
    assert '"num_actions": 2' in capsys.readouterr().out
    state = torch.load(output_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    weights = state["policy"]
    assert not [key for key in weights if key.startswith("ref_model.")]  # π_ref is rebuilt from the model
    assert any(key.startswith("target_q_head.") for key in weights)  # the Polyak target is state: kept
    assert any(key.startswith("model.") for key in weights) and state["optimizer"]["state"]


def test_load_policy_tells_a_missing_path_a_typo_and_an_uncached_hub_id_apart(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_policy(str(tmp_path / "missing-model"))
    with pytest.raises(FileNotFoundError, match="did you mean 'etpo-tiny-coder'"):
        load_policy("etpo-tiny-coders")
    with pytest.raises(FileNotFoundError, match=r"`hf download no-such-owner/no-such-model-123`") as error:
        load_policy("no-such-owner/no-such-model-123")
    assert "huggingface-cli" not in str(error.value)
    check_model("etpo-tiny-coder")  # the packaged model is found


@pytest.mark.slow
def test_train_cli_trains_an_sb3_agent(tmp_path):
    output_dir = tmp_path / "run"
    train.main(["--algo", "sb3-ppo", "--dataset", "iris", "--total-actions", "2", "--max-action-tokens", "16",
                "--algo-arg", "n_steps=8", "--algo-arg", "batch_size=8", "--output-dir", str(output_dir)])  # fmt: skip
    final = json.loads((output_dir / "final_metrics.json").read_text())
    assert final["algo"] == "sb3-ppo" and final["num_actions"] == 2 and (output_dir / "model.zip").exists()


@pytest.mark.parametrize("old_name, why", [("etpo-td-lambda", "TD"), ("etpo-conservative", "conservative_coef")])
def test_deprecated_agent_name_warns_and_keeps_the_default_settings(old_name, why):
    from etpo_agents.train import default_algo_config

    with pytest.warns(FutureWarning, match=f"use 'etpo', whose default is now .*{why}"):
        old = default_algo_config(old_name)
    assert old == default_algo_config("etpo")
