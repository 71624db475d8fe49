"""etpo-tiny-coder: the shipped model and tokenizer load offline, the corpus is deterministic and runs, and a
fixed-seed sample reaches the executable rate stated in the model card."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from etpo_agents.tiny_coder import corpus, evaluate, programs  # noqa: E402
from etpo_agents.tiny_coder.train import ASSET_DIR, ENV_TOKENIZER, PROMPT_ROOM  # noqa: E402
from etpo_gym import task  # noqa: E402
from etpo_gym.datasets import load_dataset  # noqa: E402

CODE_SAMPLES = [
    "from sklearn.ensemble import RandomForestClassifier\n    model = RandomForestClassifier(n_estimators=100)\n"
    "    model.fit(x_train, y_train)\n    return model",
    "def f(a , b):\n\treturn a . b  # don't\n\n\n  x = [1 , 2]  \n",
    'model = make_pipeline(StandardScaler(), SVC(probability=True, C=1.0))\r\n    print("é ✓")',
]


@pytest.fixture(scope="module")
def shipped():
    """The packaged model, loaded by its name the way users do (offline)."""
    from etpo_agents import load_policy

    model, tokenizer = load_policy("etpo-tiny-coder")
    assert os.path.samefile(model.name_or_path, ASSET_DIR)
    model.eval()
    return model, tokenizer


def test_shipped_model_loads_offline(shipped):
    model, tokenizer = shipped
    num_params = sum(p.numel() for p in model.parameters())
    assert 2e6 <= num_params <= 20e6
    assert os.path.getsize(os.path.join(ASSET_DIR, "model.safetensors")) <= 25 * 2**20
    assert model.config.vocab_size == len(tokenizer) and model.config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.do_sample and model.generation_config.temperature == 1.0
    # The env's tokenizer file and the model's tokenizer are the same tokenizer.
    env_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=ENV_TOKENIZER, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    prompt = task.build_prompt(load_dataset("diabetes"))
    assert env_tokenizer(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]
    assert tokenizer(prompt)["input_ids"][0] == tokenizer.bos_token_id


@pytest.mark.parametrize("code", CODE_SAMPLES)
def test_tokenizer_round_trips_code(shipped, code):
    _, tokenizer = shipped
    ids = tokenizer(code, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == code
    assert tokenizer.decode(tokenizer(code)["input_ids"], skip_special_tokens=True) == code


def test_corpus_is_deterministic_and_varied():
    first = list(corpus.generate(40, seed=3))
    assert first == list(corpus.generate(40, seed=3))
    assert first != list(corpus.generate(40, seed=4))
    assert {e.kind for e in first} == set(corpus.KINDS)
    assert all(e.prompt.endswith("\n    ") and not e.body.startswith(" ") for e in first)
    assert len(programs.FAMILIES) >= 10


def test_corpus_bodies_execute_and_mistakes_fail():
    dataset = load_dataset("kidney_stone")
    rng = np.random.default_rng(0)
    for _ in range(4):
        body, _ = programs.sample_body(rng, dataset, "paper")
        assert "auc" in evaluate.execute(dataset, body.render()), body.render()
    mistakes = [e for e in corpus.generate(60, seed=1) if e.kind == "mistake"][:3]
    assert mistakes
    for example in mistakes:
        assert "error" in evaluate.execute(dataset, example.body)
    fixes = [e for e in corpus.generate(60, seed=1) if e.kind == "reflection"][:2]
    for example in fixes:
        assert "auc" in evaluate.execute(dataset, example.body), example.body


def test_training_sequences_follow_the_env_tokenization(shipped):
    from etpo_agents.tiny_coder.train import tokenize

    _, tokenizer = shipped
    examples = list(corpus.generate(5, seed=0))
    for example, (ids, num_prompt) in zip(examples, tokenize(examples, tokenizer), strict=True):
        prompt_ids = tokenizer(example.prompt)["input_ids"][-PROMPT_ROOM:]
        assert list(ids[:num_prompt]) == prompt_ids
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[num_prompt:-1].tolist()) == example.body


def test_generates_through_the_env_token_by_token(shipped):
    model, tokenizer = shipped
    env = gym.make("ETPO-DataSci-KidneyStone-v0")  # the env's default tokenizer is the model's
    observation, info = env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(env.unwrapped.max_action_tokens):
            length = int(observation["attention_mask"].sum())
            logits = model(input_ids=torch.as_tensor(observation["input_ids"][None, :length])).logits[0, -1]
            action = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            observation, reward, terminated, truncated, info = env.step(action)
            if info["action_done"]:
                break
    env.close()
    assert info["action_done"]
    assert reward == -1.0 or 0.0 <= reward <= 1.0


def test_fixed_seed_sample_reaches_the_card_executable_rate(shipped):
    model, tokenizer = shipped
    with open(os.path.join(ASSET_DIR, "evaluation.json")) as handle:
        card_rate = json.load(handle)["summary"]["per_dataset"]["kidney_stone"]["executable_rate"]
    records = evaluate.evaluate_dataset(model, tokenizer, load_dataset("kidney_stone"), num_samples=30, seed=0)
    rate = np.mean(["auc" in r for r in records])
    assert abs(rate - card_rate) <= 0.15, (rate, card_rate)  # ~2.5 binomial σ at n = 30
    assert len({r["family"] for r in records}) >= 4


def test_reflection_reads_the_failed_body_and_fixes_it(shipped):
    """The second turn: given the failed body and its NameError, most fixes run and keep the body's classifier
    (from the first-turn prompt alone the model picks a random forest in ~1 of 18 families)."""
    model, tokenizer = shipped
    failed = "    model = RandomForestClassifier(n_estimators=50)\n    model.fit(x_train, y_train)\n"
    error = "NameError: name 'RandomForestClassifier' is not defined"
    records = [{"body": failed, "error": error} for _ in range(8)]
    evaluate.evaluate_reflections(model, tokenizer, load_dataset("kidney_stone"), records, seed=0)
    fixes = [r["fix"] for r in records]
    assert sum("auc" in f for f in fixes) >= 5, fixes
    assert sum("import RandomForestClassifier" in f["body"] for f in fixes) >= 5, fixes
