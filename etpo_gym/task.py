"""The data-science task: prompts, the reflection prompt, code assembly and the reward procedure.

The agent writes the body of ``build_model(x_train, y_train)``. The prompt is the paper's code-infill prompt
(``DS_CODE_PROMPT`` of the official code) ending right where the body starts, so a causal LM continues it; the
body is executed inside :data:`PROGRAM_TEMPLATE` and scored by :func:`score_build_model`:

    reward = mean_{i=0..4} ROC_AUC(model_i, test half of train_test_split(x, y, 0.5, random_state=i, shuffle=True))

with ``model_i = build_model(train half)``, one-vs-one macro AUC for more than two classes, and -1 on any failure.

DEVIATION: the official prompt shows the full dataset's shape; here it shows the shape of ``x_train`` that
``build_model`` really receives (half of the reward pool).
"""

from __future__ import annotations

import re
import textwrap
import warnings

import numpy as np

from etpo_gym.datasets import TabularDataset

NUM_SPLITS = 5
"""Random 50/50 splits averaged by the reward (seeds ``0..NUM_SPLITS-1``), as in the paper."""

FAILURE_REWARD = -1.0
"""Reward of any failed execution (the paper's value)."""

PROMPT_STYLES = ("paper", "rich")

_HEADER = '"""Classification with a {title} Prediction Dataset"""\nimport numpy as np\n\n'
_SIGNATURE = "def build_model(x_train: np.ndarray, y_train: np.ndarray):\n"
_DOCSTRING = '    """ Import modules, return a scikit model trained with x_train in shape {shape} and y_train."""\n'

PROGRAM_TEMPLATE = "import numpy as np\n\n" + _SIGNATURE + "{body}\n"
"""Module source that defines ``build_model``; ``{body}`` is the normalised, indented body."""


def _shape_text(dataset: TabularDataset) -> str:
    return str(tuple(dataset.train_shape))


def _rich_context(dataset: TabularDataset) -> str:
    """Extra comment block of the rich prompt: description, columns with kinds, class balance."""
    lines = []
    if dataset.description:
        lines += ["# " + line if line else "#" for line in textwrap.fill(dataset.description, 100).splitlines()]
    columns = ", ".join(f"{n} ({k})" for n, k in zip(dataset.feature_names, dataset.feature_kinds, strict=True))
    lines += textwrap.wrap(f"Columns of x_train: {columns}", 100, initial_indent="# ", subsequent_indent="#   ")
    counts = np.bincount(dataset.y, minlength=dataset.num_classes) / len(dataset.y)
    balance = ", ".join(f"{c}: {share:.0%}" for c, share in zip(dataset.class_names, counts, strict=True))
    lines.append(f"# Classes of y_train (encoded 0..{dataset.num_classes - 1}): {balance}")
    lines.append("# Categorical columns are label-encoded as integers; there are no missing values.")
    return "\n".join(lines) + "\n"


def _header(dataset: TabularDataset, style: str) -> str:
    """Module docstring and import of both prompts, after the rich context block for ``style="rich"``."""
    header = _HEADER.format(title=dataset.title)
    if style == "rich":
        return _rich_context(dataset) + header
    if style != "paper":
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    return header


def build_prompt(dataset: TabularDataset, style: str = "paper") -> str:
    """First-turn prompt; ends with the body's indentation so a causal LM writes the body next."""
    return _header(dataset, style) + _SIGNATURE + _DOCSTRING.format(shape=_shape_text(dataset)) + "    "


def build_reflection_prompt(dataset: TabularDataset, failed_body: str, error: str, style: str = "paper") -> str:
    """Prompt after a failure: the failed function, the error, and a fresh signature asking for a fix."""
    header = _header(dataset, style)
    failed = indent_body(failed_body) or "    pass"
    return (
        header
        + f'""" An error was reported while executing this function: {error}. Please fix it."""\n'
        + _SIGNATURE
        + _DOCSTRING.format(shape=_shape_text(dataset))
        + failed
        + "\n\n"
        + _SIGNATURE
        + '    """ Fix the error in the previous function. """\n'
        + "    "
    )


_RETURN_MODEL = re.compile(r"^\s*return\s+model\s*$")


def normalize_body(code: str) -> str:
    """Canonical body text: dedented, trailing blank lines and a final ``return model`` removed.

    Accepts the body with or without the function's indentation, and in the form a causal LM writes after the
    prompt's trailing indentation (first line unindented, the rest indented). That form is ambiguous for a first
    line that opens a block, so the readings are tried in order -- the first line indented like the function
    body (4 spaces), like the least-indented later line, or not at all -- and the first that compiles wins.
    Used for execution and as the cache key, so equivalent spellings of one body share a cache entry.
    """
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").replace("\t", "    ").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return ""
    rest = [line for line in lines[1:] if line.strip()]
    rest_indent = min((len(line) - len(line.lstrip(" ")) for line in rest), default=0)
    readings = [lines]
    if not lines[0].startswith(" ") and rest_indent > 0:
        readings = [[" " * pad + lines[0], *lines[1:]] for pad in dict.fromkeys((4, rest_indent, 0))]
    bodies = [_strip_final_return(textwrap.dedent("\n".join(reading))) for reading in readings]
    return next((body for body in bodies if _compiles(body)), bodies[0])


def _strip_final_return(body: str) -> str:
    body_lines = body.strip("\n").split("\n")
    while body_lines and not body_lines[-1].strip():
        body_lines.pop()
    if body_lines and _RETURN_MODEL.match(body_lines[-1]) and not body_lines[-1].startswith(" "):
        body_lines.pop()
    return "\n".join(body_lines).strip("\n")


def _compiles(body: str) -> bool:
    source = PROGRAM_TEMPLATE.format(body=textwrap.indent(body or "pass", "    "))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "1a": the executor reports what matters
        try:
            compile(source, "<build_model>", "exec")
        except (SyntaxError, ValueError):
            return False
    return True


def indent_body(body: str) -> str:
    """Normalised body indented by four spaces, as it stands inside ``build_model``."""
    return textwrap.indent(normalize_body(body), "    ", lambda line: True) if body.strip() else ""


def program_source(body: str) -> str:
    """Full module source defining ``build_model`` from a body (appends ``return model``)."""
    indented = indent_body(body)
    return PROGRAM_TEMPLATE.format(body=(indented + "\n" if indented else "") + "    return model")


def roc_auc(y_true: np.ndarray, probabilities: np.ndarray, num_classes: int) -> float:
    """ROC AUC as in the paper: positive-class column for 2 classes, one-vs-one macro otherwise.

    Raises:
        ValueError: probabilities of the wrong shape, or not finite.
    """
    from sklearn.metrics import roc_auc_score

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), num_classes):
        raise ValueError(f"predict_proba returned shape {probabilities.shape}, expected {(len(y_true), num_classes)}")
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("predict_proba returned NaN or infinite values")
    if num_classes == 2:
        return float(roc_auc_score(y_true, probabilities[:, 1]))
    # roc_auc_score's multi-class mode needs rows summing to 1.
    sums = probabilities.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("predict_proba returned rows that do not sum to a positive value")
    return float(roc_auc_score(y_true, probabilities / sums, multi_class="ovo", labels=np.arange(num_classes)))


def score_build_model(build_model, x, y, x_test, y_test, num_classes: int) -> dict:
    """The paper's reward procedure plus the held-out AUC.

    Args:
        build_model: callable ``(x_train, y_train) -> fitted model with predict_proba``.
        x, y: reward pool, float64 (N, F) and int64 (N,).
        x_test, y_test: held-out split, never used for the reward.
        num_classes: K; labels are ``0..K-1``.

    Returns:
        ``{"split_aucs": [NUM_SPLITS floats], "auc": mean, "auc_std": std, "test_auc": mean held-out AUC of the
        NUM_SPLITS models}``. Each model gets fresh copies of its arrays, so mutation cannot leak between splits.

    Raises:
        Whatever ``build_model`` or the model raises; ``ValueError`` for unusable predictions.
    """
    from sklearn.model_selection import train_test_split

    split_aucs, test_aucs = [], []
    for seed in range(NUM_SPLITS):
        x_train, x_eval, y_train, y_eval = train_test_split(x, y, test_size=0.5, random_state=seed, shuffle=True)
        model = build_model(x_train.copy(), y_train.copy())
        if model is None or not hasattr(model, "predict_proba"):
            raise TypeError(f"build_model must return a fitted model with predict_proba, got {type(model).__name__}")
        split_aucs.append(roc_auc(y_eval, model.predict_proba(x_eval.copy()), num_classes))
        test_aucs.append(roc_auc(y_test, model.predict_proba(np.array(x_test)), num_classes))
    return {
        "split_aucs": split_aucs,
        "auc": float(np.mean(split_aucs)),
        "auc_std": float(np.std(split_aucs)),
        "test_auc": float(np.mean(test_aucs)),
    }
