"""Evaluate etpo-tiny-coder on the real task: sample bodies from the env's first-turn prompt and score them.

    python -m etpo_agents.tiny_coder.evaluate --num-samples 30 --seed 0 --output eval.json

For each dataset (default: every bundled one) the model samples ``--num-samples`` bodies from
``build_prompt(dataset)`` (paper style, the env's default) at the env's default settings -- plain ancestral
sampling at temperature 1.0, no top-k / top-p, at most 256 new tokens, ended by ``</s>`` or one of the env's stop
strings -- and each distinct body is scored by the paper's reward procedure (:func:`etpo_gym.task.score_build_model`,
mean ROC AUC over 5 random 50/50 splits of the reward pool) in the env's sandboxed
:class:`~etpo_gym.executor.CodeExecutor` (default settings, so timeouts count as failures as in the env), or
in-process with ``--in-process``.

Printed and saved: executable rate, distinct classifier families, and per dataset the mean / best / worst AUC of
the executable bodies (the spread RL can exploit). Second turn: for every failed first-turn body the model samples
one fix from the env's reflection prompt (the failed body and its error message, as the env shows them), scored
the same way; the share of failures fixed in one turn is the reflection fix rate.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
import warnings

import numpy as np
import torch

from etpo_agents.tiny_coder.train import ASSET_DIR, ensure_passive_openmp
from etpo_gym import task
from etpo_gym.datasets import BUNDLED_DATASETS, TabularDataset, load_dataset
from etpo_gym.env import DEFAULT_STOP_STRINGS
from etpo_gym.executor import CodeExecutor

MODEL_NAME = "etpo-tiny-coder"

_WRAPPERS = ("VotingClassifier", "BaggingClassifier", "CalibratedClassifierCV", "StackingClassifier")
_ESTIMATOR = re.compile(r"\b([A-Z]\w*(?:Classifier|Regression|NB|Analysis|CV|Centroid)|\w*SVC|Perceptron)\(")


def load(path: str | None = None):
    """``(model, tokenizer)`` of the shipped model (or a model directory), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = path or ASSET_DIR
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def sample_bodies(
    model, tokenizer, prompt: str, num_samples: int, seed: int, max_new_tokens: int = 256, temperature: float = 1.0
) -> list[str]:
    """Sample ``num_samples`` bodies continuing ``prompt`` as the env would decode them.

    The prompt is tokenized alone (``tokenizer(prompt)``, with ``<s>``), like the env's observation; each body is
    ``tokenizer.decode(ids before </s>, skip_special_tokens=True)`` cut at the first env stop string.
    """
    torch.manual_seed(seed)
    input_ids = torch.tensor([tokenizer(prompt)["input_ids"]] * num_samples)  # (N, P)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )[:, input_ids.shape[1] :]  # (N, <= max_new_tokens)
    bodies = []
    for row in output.tolist():
        ids = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in DEFAULT_STOP_STRINGS if s in text), default=len(text))
        bodies.append(text[:cut])
    return bodies


def classifier_family(body: str) -> str:
    """Final classifier named in a body: an ensemble wrapper if there is one, else the last estimator."""
    names = _ESTIMATOR.findall(body)
    wrappers = [n for n in names if n in _WRAPPERS]
    return wrappers[0] if wrappers else (names[-1] if names else "unknown")


def execute(dataset: TabularDataset, body: str, executor: CodeExecutor | None = None) -> dict:
    """Score ``body`` like the env; ``{"auc": ..., "test_auc": ...}`` or ``{"error": "<Type>: <message>"}``.

    With ``executor`` the body runs in the env's sandbox (timeouts and memory limits included); without it,
    in-process through :func:`etpo_gym.task.score_build_model` (no timeout: for trusted code only).
    """
    if executor is not None:
        result = executor.evaluate(dataset, body)
        if result.ok:
            return {"auc": result.auc, "test_auc": result.test_auc}
        return {"error": result.message or str(result.error_type)}
    try:
        namespace: dict = {}
        exec(compile(task.program_source(body), "<string>", "exec"), namespace)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = task.score_build_model(
                namespace["build_model"], dataset.x, dataset.y, dataset.x_test, dataset.y_test, dataset.num_classes
            )
        return {"auc": scores["auc"], "test_auc": scores["test_auc"]}
    except Exception as error:  # any failure of generated code is the task's -1
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}


def evaluate_dataset(
    model, tokenizer, dataset: TabularDataset, num_samples: int, seed: int, executor: CodeExecutor | None = None
) -> list[dict]:
    """One record per sample: ``body``, ``family``, and ``auc`` / ``test_auc`` or ``error``."""
    bodies = sample_bodies(model, tokenizer, task.build_prompt(dataset), num_samples, seed)
    cache: dict[str, dict] = {}
    records = []
    for body in bodies:
        key = task.normalize_body(body)
        if key not in cache:
            cache[key] = execute(dataset, body, executor)
        records.append({"body": body, "family": classifier_family(body), **cache[key]})
    return records


def evaluate_reflections(
    model, tokenizer, dataset: TabularDataset, records: list[dict], seed: int, executor: CodeExecutor | None = None
) -> None:
    """The second turn of every failed record: one body sampled from the env's reflection prompt, scored; adds
    ``record["fix"]`` = ``{"body", "auc", "test_auc"}`` or ``{"body", "error"}``."""
    for k, record in enumerate(records):
        if "error" in record:
            prompt = task.build_reflection_prompt(dataset, record["body"], record["error"])
            body = sample_bodies(model, tokenizer, prompt, 1, seed * 1000 + k)[0]
            record["fix"] = {"body": body, **execute(dataset, body, executor)}


def _fix_rate(records: list[dict]) -> float | None:
    fixes = [r["fix"] for r in records if "fix" in r]
    return sum("auc" in f for f in fixes) / len(fixes) if fixes else None


def summarize(records_by_dataset: dict[str, list[dict]]) -> dict:
    """Executable rate, families, and per-dataset AUC statistics of executable bodies."""
    all_records = [r for records in records_by_dataset.values() for r in records]
    executable = [r for r in all_records if "auc" in r]
    per_dataset = {}
    for name, records in records_by_dataset.items():
        aucs = [r["auc"] for r in records if "auc" in r]
        by_family = collections.defaultdict(list)
        for r in records:
            if "auc" in r:
                by_family[r["family"]].append(r["auc"])
        per_dataset[name] = {
            "num_samples": len(records),
            "executable_rate": len(aucs) / len(records),
            "mean_auc": float(np.mean(aucs)) if aucs else None,
            "best_auc": float(np.max(aucs)) if aucs else None,
            "worst_auc": float(np.min(aucs)) if aucs else None,
            "family_mean_auc": {f: round(float(np.mean(v)), 3) for f, v in sorted(by_family.items())},
            "reflection_fix_rate": _fix_rate(records),
        }
    errors = collections.Counter(r["error"].split(":")[0] for r in all_records if "error" in r)
    return {
        "num_samples": len(all_records),
        "executable_rate": len(executable) / len(all_records),
        "families": dict(collections.Counter(r["family"] for r in all_records).most_common()),
        "num_executable_families": len({r["family"] for r in executable}),
        "error_types": dict(errors.most_common()),
        "num_reflections": sum("fix" in r for r in all_records),
        "reflection_fix_rate": _fix_rate(all_records),
        "per_dataset": per_dataset,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped etpo-tiny-coder)")
    parser.add_argument("--datasets", nargs="+", default=list(BUNDLED_DATASETS))
    parser.add_argument("--num-samples", type=int, default=30, help="samples per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="write records and summary as JSON here")
    parser.add_argument("--in-process", action="store_true", help="run bodies in-process instead of the sandbox")
    args = parser.parse_args(argv)
    ensure_passive_openmp("etpo_agents.tiny_coder.evaluate", argv)
    torch.set_num_threads(args.num_threads)
    model, tokenizer = load(args.model)
    start = time.time()
    executor = None if args.in_process else CodeExecutor()
    records = {}
    for offset, name in enumerate(args.datasets):
        dataset = load_dataset(name)
        records[name] = evaluate_dataset(model, tokenizer, dataset, args.num_samples, args.seed + offset, executor)
        evaluate_reflections(model, tokenizer, dataset, records[name], args.seed + offset, executor)
    if executor is not None:
        executor.close()
    summary = summarize(records)
    summary["wall_time_s"] = round(time.time() - start, 1)
    print(f"{'dataset':<18} {'exec':>6} {'mean':>6} {'best':>6} {'worst':>6} {'fixed':>6}")
    for name, row in summary["per_dataset"].items():
        keys = ("mean_auc", "best_auc", "worst_auc", "reflection_fix_rate")
        cells = [f"{row[k]:6.3f}" if row[k] is not None else "   n/a" for k in keys]
        print(f"{name:<18} {row['executable_rate']:6.0%} {' '.join(cells)}")
    print(
        f"executable: {summary['executable_rate']:.1%} of {summary['num_samples']}; "
        f"{summary['num_executable_families']} executable families; errors {summary['error_types']}; "
        f"reflection fixed {summary['reflection_fix_rate']:.1%} of {summary['num_reflections']} failures in one turn"
    )
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"summary": summary, "records": records}, handle, indent=2)


if __name__ == "__main__":
    main()
