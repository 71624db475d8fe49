"""Training that loses nothing: SIGKILL a real training run mid-way, resume, and check nothing leaked or repeated."""

import csv
import os
import signal
import subprocess
import sys
import time

import psutil
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..")


def train_command(model: str, output_dir: str, total_actions: int, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "etpo_agents.train", "--algo", "reinforce", "--dataset", "iris", "--model", model,
               "--total-actions", str(total_actions), "--actions-per-rollout", "1", "--max-action-tokens", "8",
               "--max-turns", "2", "--save-every", "1", "--no-eval", "--no-progress", "--output-dir", output_dir]  # fmt: skip
    return command + (["--resume"] if resume else [])


def csv_steps(path: str) -> list[int]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [int(float(row["env_actions"])) for row in csv.DictReader(f)]


TOTAL_ACTIONS = 40  # long enough that the run is still mid-way when the test kills it after its 3rd update


def test_sigkill_mid_training_then_resume_continues(tiny_model_dir, tmp_path):
    output_dir = str(tmp_path / "run")
    metrics = os.path.join(output_dir, "metrics.csv")
    command = train_command(tiny_model_dir, output_dir, TOTAL_ACTIONS)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(csv_steps(metrics)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)  # the trainer only: its sandbox workers must notice and exit
    process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=15)
    assert not alive, f"processes outlived the killed trainer: {[p.cmdline() for p in alive]}"
    killed_at = csv_steps(metrics)
    assert 3 <= len(killed_at) < TOTAL_ACTIONS

    checkpoint = torch.load(os.path.join(output_dir, "checkpoint.pt"), map_location="cpu", weights_only=False)
    saved = checkpoint["progress"]["env_actions"]
    assert saved >= 2 and checkpoint["optimizer"] is not None and len(checkpoint["rng"]["samplers"]) == 1

    subprocess.run(train_command(tiny_model_dir, output_dir, TOTAL_ACTIONS, resume=True), cwd=ROOT, check=True,
                   timeout=400, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    steps = csv_steps(metrics)
    # Every update logged once, in order, none lost or repeated.
    assert steps == list(range(1, TOTAL_ACTIONS + 1)), steps
    final = torch.load(os.path.join(output_dir, "checkpoint.pt"), map_location="cpu", weights_only=False)
    assert final["progress"]["env_actions"] == TOTAL_ACTIONS and final["progress"]["updates"] == TOTAL_ACTIONS
