"""Smoke tests of the performance benchmarks (update cost, linearity, memory, distributed): smallest settings, no
timing checks."""

import dataclasses
import json
import os
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_distributed  # noqa: E402
import bench_env  # noqa: E402
import bench_linearity  # noqa: E402
import bench_memory  # noqa: E402
import bench_update  # noqa: E402
from _bench_common import env_prompt, env_tokenizer, make_batch  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The benchmarks set torch's thread count; give the rest of the session its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_make_batch_has_the_collector_layout():
    """Odd number of actions: a failed turn 0 -> turn 1 (terminated), and a truncated action with a bootstrap."""
    tokenizer = env_tokenizer()
    batch = make_batch(env_prompt(), num_actions=3, action_len=5, vocab=len(tokenizer), pad_id=tokenizer.pad_token_id)
    assert batch.num_actions == 3 and batch.num_tokens == 15
    assert batch.next_segment.tolist() == [1, -1, 3, -1]
    assert batch.terminated.tolist() == [False, True, False, False]
    assert batch.truncated.tolist() == [False, False, True, False]
    assert int(batch.row_mask.sum()) == 15 and len(batch.row_mask) == 16
    assert batch.row_next[4] == 5  # last token of turn 0 -> first row of turn 1


def test_bench_update_smoke(capsys):
    report = bench_update.main(
        ["--model-size", "tiny", "--repeats", "1", "--num-actions", "2", "--action-len", "4", "--skip-defaults"]
    )
    assert "| matched | ETPO | 2 x 2 |" in report and "| matched | PPO | 2 x 2 |" in report
    assert "ETPO compute_targets" in report and "PPO compute_advantages" in report
    assert "x**" in report  # the ETPO / PPO ratio
    assert report in capsys.readouterr().out


def test_bench_linearity_smoke():
    report = bench_linearity.main(
        ["--model-size", "tiny", "--lengths", "2", "4", "8", "--repeats", "1", "--num-actions", "2", "--with-ppo"]
    )
    assert "ETPO: fit time = a + b*L" in report and "PPO: fit time = a + b*L" in report and "R^2 = " in report
    for length in (2, 4, 8):
        assert f"\n| {length} | {2 * length} |" in report


def test_linear_fit_exact():
    a, b, r2 = bench_linearity.linear_fit([1, 2, 3], [3.0, 5.0, 7.0])
    assert a == pytest.approx(1.0) and b == pytest.approx(2.0) and r2 == pytest.approx(1.0)


def test_bench_memory_smoke():
    report = bench_memory.main(["--model-size", "tiny", "--action-len", "16", "--num-actions", "2", "--skip-7b"])
    assert "ours: `Batch.nbytes()` / actions" in report and "official: 3 x 16 tokens x 32,016 vocab x 4 B" in report
    assert report.count("official: 4 full copies") == 2  # tiny model + meta ~0.5B
    assert report.count("ours, LoRA") == 2 and report.count("ours, full fine-tuning") == 2
    assert "meta device" in report


def test_bench_memory_counts_the_dueling_value_heads():
    import torch

    from etpo_agents.policy import Policy

    model, tokenizer, _ = bench_memory.load_model("tiny")
    policy = Policy(model, tokenizer, q_head=True, use_lora=False, device="cpu")
    heads = (policy.q_head, policy.target_q_head, policy.q_value_head, policy.target_q_value_head)
    assert all(isinstance(head, torch.nn.Module) for head in heads)  # the default dueling head has V heads
    expected = sum(p.numel() * p.element_size() for head in heads for p in head.parameters())
    assert bench_memory.policy_breakdown(policy)["soft-Q heads + targets"] == expected


def test_bench_distributed_smoke():
    """Two CPU ranks: FSDP holds half of DDP's training state per rank (measured from the tensors each rank holds);
    while sampling it adds π's gathered parameters (not the π_ref copy's layers) to its shards."""
    results = bench_distributed.measure(bench_distributed.parse_args(["--model-size", "tiny", "--repeats", "1"]))
    ddp, fsdp = results["ddp"], results["fsdp"]
    assert fsdp["total_mb"] / ddp["total_mb"] == pytest.approx(0.5, rel=0.02)
    assert ddp["sampling_params_mb"] == ddp["params_mb"]
    assert fsdp["params_mb"] + 0.5 * ddp["params_mb"] < fsdp["sampling_params_mb"] < 1.5 * ddp["params_mb"]


def test_bench_env_rollout_shares_add_up():
    result = bench_env.rollout_shares(1, model_size="tiny")
    assert result["steps"]["action_end"] >= 1 and result["steps"]["intra_action"] >= 1
    assert sum(result["shares"].values()) == pytest.approx(1.0)
    assert all(share >= 0 for share in result["shares"].values())


def test_credit_benchmark_resumes_and_reruns_only_changed_agents(tmp_path, capsys, monkeypatch):
    """A second call with the same grid runs nothing; a changed agent default drops and re-runs that agent's runs."""
    from benchmarks import credit
    from etpo_agents import train

    argv = ["--algos", "reinforce", "grpo", "--seeds", "0", "--lengths", "8", "--distances", "1",
            "--max-episodes", "16", "--output-dir", str(tmp_path)]  # fmt: skip
    credit.main(argv)
    first = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(first) == 2 and (tmp_path / "credit.png").exists()
    capsys.readouterr()
    credit.main(argv)
    assert "2 runs (2 already in" in capsys.readouterr().out
    assert (tmp_path / "results.jsonl").read_text().splitlines() == first

    spec = train.ALGORITHMS["grpo"]
    monkeypatch.setitem(train.ALGORITHMS, "grpo", train.AgentSpec(spec.config_cls, spec.update,
                                                                  defaults=(("clip_range", 0.3),)))  # fmt: skip
    credit.main(argv)
    out = capsys.readouterr().out
    assert "dropping 1 earlier runs" in out and "2 runs (1 already in" in out
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["config"]["algo"] for r in records) == ["grpo", "reinforce"]
    assert next(r for r in records if r["config"]["algo"] == "grpo")["agent_config"]["clip_range"] == 0.3


def test_credit_runs_give_every_agent_the_same_gradient_steps(monkeypatch):
    """Matched compute: ``CellConfig``'s passes and minibatches replace each agent's own defaults (PPO's are 4 x 2,
    REINFORCE's 1 x 1)."""
    from benchmarks import credit
    from etpo_agents import train

    seen = []
    for algo in ("ppo", "reinforce"):
        spec = train.ALGORITHMS[algo]
        fake = dataclasses.replace(spec, update=lambda policy, batch, optimizer, config, **_: seen.append(config))
        monkeypatch.setitem(train.ALGORITHMS, algo, fake)
        credit.run_cell(credit.CellConfig(algo, action_length=2, key_distance=1, seed=0, max_episodes=8))
    assert [(c.num_epochs, c.num_minibatches) for c in seen] == [(2, 2), (2, 2)]
