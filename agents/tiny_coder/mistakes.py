"""Realistic bugs for the etpo-tiny-coder corpus, with the real error message of each.

Each mistake turns a correct body (:mod:`etpo_agents.tiny_coder.programs`) into a buggy one; the correct body is the
fix a reflection example teaches. The error text comes from running the buggy body through the task's reward
procedure in-process on small random data of the prompt's shape (our own generated code, not untrusted code).
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np

from etpo_agents.tiny_coder.programs import Body, sample_body
from etpo_gym import task

MISTAKES = (
    "missing_fit",
    "no_predict_proba",
    "wrong_import",
    "misspelled_argument",
    "missing_import",
    "fit_without_labels",
    "unclosed_parenthesis",
    "invalid_value",
)
"""Bug types of ``mistake`` and ``reflection`` examples."""


_NO_PROBA = [  # (classifier without predict_proba, import line, the fix's expression, the fix's import line)
    (
        "LinearSVC()",
        "from sklearn.svm import LinearSVC",
        "CalibratedClassifierCV(LinearSVC())",
        "from sklearn.calibration import CalibratedClassifierCV",
    ),
    (
        "RidgeClassifier()",
        "from sklearn.linear_model import RidgeClassifier",
        "LogisticRegression(max_iter=1000)",
        "from sklearn.linear_model import LogisticRegression",
    ),
    ("SVC()", "from sklearn.svm import SVC", "SVC(probability=True)", "from sklearn.svm import SVC"),
    (
        'SVC(kernel="rbf", C=1.0)',
        "from sklearn.svm import SVC",
        'SVC(kernel="rbf", C=1.0, probability=True)',
        "from sklearn.svm import SVC",
    ),
    (
        "SGDClassifier()",
        "from sklearn.linear_model import SGDClassifier",
        'SGDClassifier(loss="log_loss")',
        "from sklearn.linear_model import SGDClassifier",
    ),
    (
        "Perceptron()",
        "from sklearn.linear_model import Perceptron",
        "LogisticRegression()",
        "from sklearn.linear_model import LogisticRegression",
    ),
    (
        "NearestCentroid()",
        "from sklearn.neighbors import NearestCentroid",
        "KNeighborsClassifier()",
        "from sklearn.neighbors import KNeighborsClassifier",
    ),
]

_WRONG_MODULES = {
    "sklearn.ensemble": ["sklearn.ensembles", "sklearn.tree", "sklearn.linear_model", "sklearn.forest"],
    "sklearn.linear_model": ["sklearn.linear", "sklearn.linear_models", "sklearn.regression", "sklearn.svm"],
    "sklearn.neighbors": ["sklearn.neighbours", "sklearn.knn", "sklearn.cluster"],
    "sklearn.tree": ["sklearn.trees", "sklearn.ensemble"],
    "sklearn.naive_bayes": ["sklearn.bayes", "sklearn.naivebayes"],
    "sklearn.neural_network": ["sklearn.neural_networks", "sklearn.nn", "sklearn.mlp"],
    "sklearn.svm": ["sklearn.svc", "sklearn.linear_model"],
    "sklearn.preprocessing": ["sklearn.preprocess", "sklearn.scaler", "sklearn.feature_extraction"],
    "sklearn.discriminant_analysis": ["sklearn.lda", "sklearn.linear_model"],
    "sklearn.pipeline": ["sklearn.pipelines", "sklearn.compose"],
    "sklearn.decomposition": ["sklearn.pca", "sklearn.manifold"],
}

_MISSPELLINGS = {
    "n_estimators": ["n_estimator", "num_estimators", "n_trees"],
    "max_depth": ["maxdepth", "max_depths", "depth"],
    "n_neighbors": ["n_neighbours", "k", "neighbors"],
    "max_iter": ["max_iters", "iterations", "n_iter"],
    "learning_rate": ["lr", "learningrate"],
    "hidden_layer_sizes": ["hidden_layers", "hidden_size"],
    "random_state": ["random_seed", "seed"],
    "min_samples_leaf": ["min_sample_leaf", "min_leaf"],
    "C": ["c"],
    "class_weight": ["class_weights"],
    "probability": ["probabilities", "proba"],
}


def _replace_model_text(body: Body, old: str, new: str) -> Body | None:
    """``body`` with the first ``old`` in its setup or model lines replaced by ``new``."""
    for where in ("setup", "model_lines"):
        lines = getattr(body, where)
        for i, line in enumerate(lines):
            if old in line:
                lines = list(lines)
                lines[i] = line.replace(old, new, 1)
                return dataclasses.replace(body, **{where: lines})
    return None


def _missing_fit(rng, body):
    if body.fit_line is None:
        return None
    return dataclasses.replace(body, fit_line=None)


def _no_predict_proba(rng, body):
    broken, broken_import, fix, fix_import = _NO_PROBA[int(rng.integers(len(_NO_PROBA)))]
    template, extra = "model = {}", []
    if rng.random() < 0.5:
        template = "model = make_pipeline(StandardScaler(), {})"
        extra = ["from sklearn.pipeline import make_pipeline", "from sklearn.preprocessing import StandardScaler"]
    fix_imports = [fix_import] + (["from sklearn.svm import LinearSVC"] if "LinearSVC" in fix else [])
    fit_line = "model.fit(x_train, y_train)"
    fixed = Body(None, fix_imports + extra, [], [template.format(fix)], fit_line, body.return_line)
    return Body(None, [broken_import] + extra, [], [template.format(broken)], fit_line, body.return_line), fixed


def _wrong_import(rng, body):
    candidates = [i for i, line in enumerate(body.imports) if line.split()[1] in _WRONG_MODULES]
    if not candidates:
        return None
    index = int(rng.choice(candidates))
    module = body.imports[index].split()[1]
    imports = list(body.imports)
    imports[index] = imports[index].replace(module, str(rng.choice(_WRONG_MODULES[module])), 1)
    return dataclasses.replace(body, imports=imports)


def _misspelled_argument(rng, body):
    text = "\n".join(body.setup + body.model_lines)
    present = [k for k in _MISSPELLINGS if f"({k}=" in text or f" {k}=" in text]
    if not present:
        return None
    key = str(rng.choice(present))
    old = f"({key}=" if f"({key}=" in text else f" {key}="
    return _replace_model_text(body, old, old.replace(key, str(rng.choice(_MISSPELLINGS[key]))))


def _missing_import(rng, body):
    if len(body.imports) < 2:
        return None
    imports = list(body.imports)
    del imports[int(rng.integers(len(imports)))]
    return dataclasses.replace(body, imports=imports)


def _fit_without_labels(rng, body):
    if body.fit_line is None:
        return None
    return dataclasses.replace(body, fit_line=str(rng.choice(["model.fit(x_train)", "model.fit(y_train, x_train)"])))


def _unclosed_parenthesis(rng, body):
    line = body.model_lines[-1]
    if not line.endswith(")"):
        return None
    return dataclasses.replace(body, model_lines=body.model_lines[:-1] + [line[:-1]])


_INVALID_VALUES = [  # (estimator, parameter, invalid value); sklearn's messages for these are deterministic
    ("LogisticRegression", "C", "0"),
    ("LogisticRegression", "penalty", '"l1"'),
    ("KNeighborsClassifier", "n_neighbors", "0"),
    ("RandomForestClassifier", "n_estimators", "0"),
    ("ExtraTreesClassifier", "max_depth", "0"),
    ("DecisionTreeClassifier", "max_depth", "0"),
    ("GradientBoostingClassifier", "learning_rate", "0"),
    ("PCA", "n_components", "100"),
    ("SVC", "C", "-1"),
    ("MLPClassifier", "max_iter", "0"),
]


def _invalid_value(rng, body):
    for index in rng.permutation(len(_INVALID_VALUES)):
        name, param, value = _INVALID_VALUES[index]
        for where in ("setup", "model_lines"):
            lines = list(getattr(body, where))
            for i, line in enumerate(lines):
                if f"{name}(" not in line:
                    continue
                call = line[line.index(f"{name}(") :]
                if re.match(rf"{name}\([^()]*\b{param}=", call):
                    call = re.sub(rf"(\b{param}=)[^,)]*", rf"\g<1>{value}", call, count=1)
                else:
                    sep = "" if call.startswith(f"{name}()") else ", "
                    call = call.replace(f"{name}(", f"{name}({param}={value}{sep}", 1)
                lines[i] = line[: line.index(f"{name}(")] + call
                return dataclasses.replace(body, **{where: lines})
    return None


_MISTAKE_FUNCTIONS = {
    "missing_fit": _missing_fit,
    "no_predict_proba": _no_predict_proba,
    "wrong_import": _wrong_import,
    "misspelled_argument": _misspelled_argument,
    "missing_import": _missing_import,
    "fit_without_labels": _fit_without_labels,
    "unclosed_parenthesis": _unclosed_parenthesis,
    "invalid_value": _invalid_value,
}
_MISTAKE_WEIGHTS = np.array([4, 4, 3, 3, 3, 1, 1, 2], dtype=float)


def run_body(body: str, num_features: int, num_classes: int, seed: int) -> str | None:
    """Run ``body`` through the task's reward procedure on small random data; the error line or ``None``.

    The error text is the last line of a traceback, ``"<ExceptionType>: <message>"``, as the env reports it.
    The data only need the prompt's number of features and classes: the bugs do not depend on values.
    """
    rng = np.random.default_rng(seed)
    num_rows = 120 + 10 * num_classes
    x = rng.normal(size=(num_rows, num_features))
    y = np.arange(num_rows) % num_classes
    try:
        namespace: dict = {}
        exec(compile(task.program_source(body), "<string>", "exec"), namespace)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task.score_build_model(namespace["build_model"], x, y, x[:20], y[:20], num_classes)
    except Exception as error:  # any exception of generated code is the env's failure signal
        return f"{type(error).__name__}: {error}"
    return None


def sample_mistake(rng: np.random.Generator, dataset, style: str) -> tuple[str, str, str, str, str] | None:
    """``(broken_body, fixed_body, error, mistake, family)`` for ``dataset``, or ``None`` if no bug applied."""
    body, family = sample_body(rng, dataset, style)
    mistake = MISTAKES[int(rng.choice(len(MISTAKES), p=_MISTAKE_WEIGHTS / _MISTAKE_WEIGHTS.sum()))]
    result = _MISTAKE_FUNCTIONS[mistake](rng, body)
    if result is None:
        return None
    broken, fixed = result if isinstance(result, tuple) else (result, body)
    if isinstance(result, tuple):
        family = _final_family(fixed.model_lines[-1])
    error = run_body(broken.render(), dataset.train_shape[1], dataset.num_classes, int(rng.integers(2**31)))
    if error is None:
        return None
    return broken.render(), fixed.render(), error, mistake, family


def _final_family(model_line: str) -> str:
    inner = model_line.removeprefix("model = ").removeprefix("make_pipeline(StandardScaler(), ")
    return inner.split("(")[0]
