"""Correct ``build_model`` bodies for the etpo-tiny-coder corpus: classifiers, preprocessing and code layouts.

A body is drawn in three steps: a final classifier (one of :data:`FAMILIES`, all with ``predict_proba``, with
hyper-parameters from good to poor), preprocessing steps (scalers, imputer, polynomial features, feature
selection, PCA, one-hot encoding of the rich prompt's categorical columns; literal sizes stay within the prompt's
feature count, so the model has a reason to read the shape), and a layout (bare estimator, ``make_pipeline`` or
``Pipeline``, optional comment, sorted or unsorted imports, optional ``return model``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class _Context:
    """What a body may depend on: number of features and categorical column indices (rich prompt only)."""

    num_features: int
    categorical: tuple[int, ...]
    imbalanced: bool


def _context(dataset, style: str) -> _Context:
    kinds = dataset.feature_kinds
    categorical = tuple(i for i, k in enumerate(kinds) if k == "categorical") if style == "rich" else ()
    counts = np.bincount(dataset.y, minlength=dataset.num_classes)
    imbalanced = style == "rich" and counts.min() / counts.max() < 0.4
    return _Context(dataset.train_shape[1], categorical, imbalanced)


# ---------------------------------------------------------------------------------------------------------------
# Estimators: (family, constructor expression, import lines).


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A classifier or transformer as it appears in a body."""

    family: str
    expr: str
    imports: tuple[str, ...]


def _kwargs(rng: np.random.Generator, options: dict[str, list], keep: float = 0.6) -> str:
    """``name=value`` pairs, each option kept with probability ``keep``; values are Python literals."""
    parts = [f"{k}={rng.choice(np.array(v, dtype=object))!r}" for k, v in options.items() if rng.random() < keep]
    return ", ".join(parts)


def _estimator(
    name: str, module: str, rng: np.random.Generator, options: dict[str, list], keep: float = 0.6, extra: str = ""
) -> Estimator:
    args = ", ".join(a for a in (_kwargs(rng, options, keep), extra) if a)
    return Estimator(name, f"{name}({args})", (f"from {module} import {name}",))


def _seed(rng: np.random.Generator) -> list[int]:
    return [0, 42, 1, 123, 7] if rng.random() < 0.9 else [0]


_ENSEMBLE = "sklearn.ensemble"


def _random_forest(rng, ctx):
    return _estimator(
        "RandomForestClassifier",
        _ENSEMBLE,
        rng,
        {
            "n_estimators": [50, 100, 200, 300, 500],
            "max_depth": [None, 3, 5, 8, 10, 15],
            "min_samples_leaf": [1, 2, 5, 10],
            "max_features": ["sqrt", "log2", 0.5, None],
            "class_weight": ["balanced"] if ctx.imbalanced else [None, "balanced"],
            "random_state": _seed(rng),
        },
    )


def _extra_trees(rng, ctx):
    return _estimator(
        "ExtraTreesClassifier",
        _ENSEMBLE,
        rng,
        {
            "n_estimators": [100, 200, 300, 500],
            "max_depth": [None, 4, 8, 12],
            "min_samples_leaf": [1, 2, 3, 5],
            "random_state": _seed(rng),
        },
    )


def _gradient_boosting(rng, ctx):
    return _estimator(
        "GradientBoostingClassifier",
        _ENSEMBLE,
        rng,
        {
            "n_estimators": [50, 100, 200, 300],
            "learning_rate": [0.01, 0.05, 0.1, 0.2, 0.5],
            "max_depth": [1, 2, 3, 5],
            "subsample": [0.7, 0.8, 1.0],
            "random_state": _seed(rng),
        },
    )


def _hist_gradient_boosting(rng, ctx):
    return _estimator(
        "HistGradientBoostingClassifier",
        _ENSEMBLE,
        rng,
        {
            "max_iter": [50, 100, 200, 300],
            "learning_rate": [0.03, 0.05, 0.1, 0.3],
            "max_depth": [None, 3, 5, 8],
            "l2_regularization": [0.0, 0.1, 1.0],
            "max_leaf_nodes": [15, 31, 63],
            "random_state": _seed(rng),
        },
    )


def _ada_boost(rng, ctx):
    return _estimator(
        "AdaBoostClassifier",
        _ENSEMBLE,
        rng,
        {"n_estimators": [50, 100, 200], "learning_rate": [0.1, 0.5, 1.0], "random_state": _seed(rng)},
    )


def _logistic_regression(rng, ctx):
    return _estimator(
        "LogisticRegression",
        "sklearn.linear_model",
        rng,
        {
            "C": [0.01, 0.1, 0.5, 1.0, 10.0],
            "max_iter": [200, 500, 1000, 2000],
            "class_weight": ["balanced"] if ctx.imbalanced else [None, "balanced"],
        },
        keep=0.7,
    )


def _sgd(rng, ctx):
    return _estimator(
        "SGDClassifier",
        "sklearn.linear_model",
        rng,
        {"alpha": [0.0001, 0.001, 0.01], "max_iter": [1000, 2000], "random_state": _seed(rng)},
        extra=str(rng.choice(['loss="log_loss"', 'loss="modified_huber"'])),
    )


def _k_neighbors(rng, ctx):
    return _estimator(
        "KNeighborsClassifier",
        "sklearn.neighbors",
        rng,
        {"n_neighbors": [1, 3, 5, 7, 10, 15, 25], "weights": ["uniform", "distance"], "p": [1, 2]},
        keep=0.7,
    )


def _decision_tree(rng, ctx):
    return _estimator(
        "DecisionTreeClassifier",
        "sklearn.tree",
        rng,
        {
            "max_depth": [None, 2, 3, 4, 5, 8, 12],
            "min_samples_leaf": [1, 5, 10, 20],
            "criterion": ["gini", "entropy"],
            "random_state": _seed(rng),
        },
        keep=0.7,
    )


def _gaussian_nb(rng, ctx):
    return _estimator("GaussianNB", "sklearn.naive_bayes", rng, {"var_smoothing": [1e-9, 1e-8, 1e-6]}, keep=0.2)


def _bernoulli_nb(rng, ctx):
    return _estimator("BernoulliNB", "sklearn.naive_bayes", rng, {"alpha": [0.5, 1.0]}, keep=0.4)


def _mlp(rng, ctx):
    return _estimator(
        "MLPClassifier",
        "sklearn.neural_network",
        rng,
        {
            "hidden_layer_sizes": [(16,), (32,), (64,), (100,), (64, 32), (128, 64)],
            "alpha": [0.0001, 0.001, 0.01],
            "learning_rate_init": [0.001, 0.01],
            "max_iter": [300, 500, 1000],
            "early_stopping": [True],
            "random_state": _seed(rng),
        },
    )


def _svc(rng, ctx):
    return _estimator(
        "SVC",
        "sklearn.svm",
        rng,
        {
            "C": [0.1, 0.5, 1.0, 5.0, 10.0],
            "kernel": ["rbf", "rbf", "linear"],
            "gamma": ["scale", "auto"],
            "random_state": _seed(rng),
        },
        extra="probability=True",
    )


def _lda(rng, ctx):
    return _estimator(
        "LinearDiscriminantAnalysis", "sklearn.discriminant_analysis", rng, {"solver": ["svd", "lsqr"]}, keep=0.3
    )


def _qda(rng, ctx):
    return _estimator(
        "QuadraticDiscriminantAnalysis",
        "sklearn.discriminant_analysis",
        rng,
        {"reg_param": [0.0, 0.01, 0.1, 0.5]},
        keep=0.6,
    )


def _calibrated_linear_svc(rng, ctx):
    inner = _estimator("LinearSVC", "sklearn.svm", rng, {"C": [0.01, 0.1, 1.0], "max_iter": [2000, 5000]})
    cv = int(rng.choice([3, 5]))
    return Estimator(
        "CalibratedClassifierCV",
        f"CalibratedClassifierCV({inner.expr}, cv={cv})",
        ("from sklearn.calibration import CalibratedClassifierCV",) + inner.imports,
    )


def _bagging(rng, ctx):
    inner = _estimator("DecisionTreeClassifier", "sklearn.tree", rng, {"max_depth": [None, 3, 5, 8]})
    rest = _kwargs(rng, {"n_estimators": [10, 25, 50, 100], "max_samples": [0.5, 0.8, 1.0], "random_state": _seed(rng)})
    return Estimator(
        "BaggingClassifier",
        f"BaggingClassifier({', '.join(a for a in (inner.expr, rest) if a)})",
        (f"from {_ENSEMBLE} import BaggingClassifier",) + inner.imports,
    )


def _voting(rng, ctx):
    members = [
        _logistic_regression(rng, ctx),
        _random_forest(rng, ctx),
        _gaussian_nb(rng, ctx),
        _k_neighbors(rng, ctx),
        _gradient_boosting(rng, ctx),
    ]
    chosen = [members[i] for i in sorted(rng.choice(len(members), size=int(rng.integers(2, 4)), replace=False))]
    short = {
        "LogisticRegression": "lr",
        "RandomForestClassifier": "rf",
        "GaussianNB": "nb",
        "KNeighborsClassifier": "knn",
        "GradientBoostingClassifier": "gb",
    }
    pairs = ", ".join(f'("{short[m.family]}", {m.expr})' for m in chosen)
    imports = (f"from {_ENSEMBLE} import VotingClassifier",) + tuple(i for m in chosen for i in m.imports)
    return Estimator("VotingClassifier", f'VotingClassifier([{pairs}], voting="soft")', imports)


_CLASSIFIERS: dict[str, tuple[float, Callable[[np.random.Generator, _Context], Estimator], float]] = {
    # family: (sampling weight, factory, probability of a scaler). Kernel SVMs, SGD and MLPs always get one:
    # on unscaled data they converge slowly enough to hit the env's timeout.
    "RandomForestClassifier": (14, _random_forest, 0.0),
    "ExtraTreesClassifier": (6, _extra_trees, 0.0),
    "GradientBoostingClassifier": (9, _gradient_boosting, 0.0),
    "HistGradientBoostingClassifier": (7, _hist_gradient_boosting, 0.0),
    "AdaBoostClassifier": (4, _ada_boost, 0.0),
    "BaggingClassifier": (3, _bagging, 0.0),
    "LogisticRegression": (12, _logistic_regression, 0.85),
    "SGDClassifier": (3, _sgd, 1.0),
    "KNeighborsClassifier": (7, _k_neighbors, 0.85),
    "DecisionTreeClassifier": (6, _decision_tree, 0.0),
    "GaussianNB": (5, _gaussian_nb, 0.0),
    "BernoulliNB": (1, _bernoulli_nb, 0.0),
    "MLPClassifier": (5, _mlp, 1.0),
    "SVC": (6, _svc, 1.0),
    "LinearDiscriminantAnalysis": (3, _lda, 0.0),
    "QuadraticDiscriminantAnalysis": (2, _qda, 0.0),
    "CalibratedClassifierCV": (3, _calibrated_linear_svc, 1.0),
    "VotingClassifier": (3, _voting, 0.85),
}
FAMILIES: tuple[str, ...] = tuple(_CLASSIFIERS)
"""Final-classifier families of correct bodies (all have ``predict_proba``)."""


def _sample_classifier(rng: np.random.Generator, ctx: _Context) -> tuple[Estimator, float]:
    weights = np.array([w for w, _, _ in _CLASSIFIERS.values()], dtype=float)
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=weights / weights.sum()))]
    _, factory, scaled = _CLASSIFIERS[family]
    return factory(rng, ctx), scaled


def _scaler(rng: np.random.Generator) -> Estimator:
    name = str(rng.choice(["StandardScaler", "StandardScaler", "MinMaxScaler", "RobustScaler", "QuantileTransformer"]))
    expr = 'QuantileTransformer(output_distribution="normal", n_quantiles=100)' if name[0] == "Q" else f"{name}()"
    return Estimator(name, expr, (f"from sklearn.preprocessing import {name}",))


def _preprocessing(rng: np.random.Generator, ctx: _Context, scaled: float) -> list[Estimator]:
    """Transformer steps before the classifier; literal sizes stay within the prompt's feature count.

    ``scaled`` is the probability of a scaler for a scale-sensitive classifier (0 for the others).
    """
    steps: list[Estimator] = []
    if rng.random() < 0.12:
        strategy = str(rng.choice(["mean", "median", "most_frequent"]))
        steps.append(
            Estimator(
                "SimpleImputer", f'SimpleImputer(strategy="{strategy}")', ("from sklearn.impute import SimpleImputer",)
            )
        )
    if rng.random() < 0.06:
        steps.append(
            Estimator(
                "VarianceThreshold", "VarianceThreshold()", ("from sklearn.feature_selection import VarianceThreshold",)
            )
        )
    if ctx.num_features <= 12 and rng.random() < 0.1:
        steps.append(
            Estimator(
                "PolynomialFeatures",
                "PolynomialFeatures(degree=2, include_bias=False)",
                ("from sklearn.preprocessing import PolynomialFeatures",),
            )
        )
    if scaled and rng.random() < scaled or not scaled and rng.random() < 0.12:
        steps.append(_scaler(rng))
    if ctx.num_features >= 6 and rng.random() < 0.12:
        k = int(rng.integers(2, ctx.num_features))
        k_text = f"min({k}, x_train.shape[1])" if rng.random() < 0.3 else str(k)
        score = str(rng.choice(["f_classif", "mutual_info_classif"]))
        steps.append(
            Estimator(
                "SelectKBest",
                f"SelectKBest({score}, k={k_text})",
                (f"from sklearn.feature_selection import SelectKBest, {score}",),
            )
        )
    elif ctx.num_features >= 5 and rng.random() < 0.08:
        n = str(rng.choice([0.9, 0.95, 0.99])) if rng.random() < 0.4 else str(int(rng.integers(2, ctx.num_features)))
        steps.append(Estimator("PCA", f"PCA(n_components={n})", ("from sklearn.decomposition import PCA",)))
    return steps


@dataclasses.dataclass
class Body:
    """A body as lines; :meth:`render` gives the text a policy writes after the prompt's four spaces."""

    comment: str | None
    imports: list[str]
    setup: list[str]
    model_lines: list[str]
    fit_line: str | None
    return_line: bool

    def render(self) -> str:
        lines = ([self.comment] if self.comment else []) + self.imports + self.setup + self.model_lines
        lines += ([self.fit_line] if self.fit_line else []) + (["return model"] if self.return_line else [])
        return "\n".join([lines[0]] + ["    " + line for line in lines[1:]])


_COMMENTS = {
    "RandomForestClassifier": "Random forest: robust default, no scaling needed",
    "ExtraTreesClassifier": "Extremely randomized trees reduce variance",
    "GradientBoostingClassifier": "Gradient boosting usually does well on tabular data",
    "HistGradientBoostingClassifier": "Histogram gradient boosting is fast and accurate",
    "LogisticRegression": "A regularized linear model on standardized features",
    "KNeighborsClassifier": "Nearest neighbours need scaled features",
    "SVC": "Support vector machine with probability estimates for ROC AUC",
    "MLPClassifier": "A small neural network",
    "GaussianNB": "Naive Bayes is a fast baseline",
    "VotingClassifier": "Soft voting over different models",
}


def _layout(rng: np.random.Generator, ctx: _Context, classifier: Estimator, steps: list[Estimator]) -> Body:
    """Arrange imports, preprocessing steps and classifier into one of several code shapes."""
    imports = list(dict.fromkeys(i for e in steps + [classifier] for i in e.imports))
    setup: list[str] = []
    if ctx.categorical and rng.random() < 0.25:
        imports += ["from sklearn.compose import ColumnTransformer", "from sklearn.preprocessing import OneHotEncoder"]
        setup.append(f"categorical = {list(ctx.categorical)}")
        setup.append(
            "encoder = ColumnTransformer("
            '[("cat", OneHotEncoder(handle_unknown="ignore"), categorical)], remainder="passthrough")'
        )
        steps = [Estimator("ColumnTransformer", "encoder", ())] + steps
    if rng.random() < 0.5:
        imports = sorted(imports)
    comment = _COMMENTS.get(classifier.family) if rng.random() < 0.12 else None
    comment = f"# {comment}" if comment else None
    fit_line = "model.fit(x_train, y_train)"
    if not steps:
        model_lines = [f"model = {classifier.expr}"]
        if rng.random() < 0.12:
            model_lines, fit_line = [f"model = {classifier.expr}.fit(x_train, y_train)"], None
    elif rng.random() < 0.3:
        imports.append("from sklearn.pipeline import Pipeline")
        names = [e.family.lower().replace("classifier", "") or "step" for e in steps]
        pairs = [f'("{n}", {e.expr})' for n, e in zip(names, steps, strict=True)] + [f'("clf", {classifier.expr})']
        model_lines = ["model = Pipeline([" + ", ".join(pairs) + "])"]
    else:
        imports.append("from sklearn.pipeline import make_pipeline")
        if rng.random() < 0.25:
            setup.append(f"clf = {classifier.expr}")
            model_lines = [f"model = make_pipeline({', '.join(e.expr for e in steps)}, clf)"]
        else:
            model_lines = [f"model = make_pipeline({', '.join(e.expr for e in steps + [classifier])})"]
    return Body(comment, imports, setup, model_lines, fit_line, rng.random() < 0.92)


def sample_body(rng: np.random.Generator, dataset, style: str) -> tuple[Body, str]:
    """A correct body for ``dataset`` and its final classifier's family."""
    ctx = _context(dataset, style)
    classifier, scaled = _sample_classifier(rng, ctx)
    return _layout(rng, ctx, classifier, _preprocessing(rng, ctx, scaled)), classifier.family
