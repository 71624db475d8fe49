"""Seeded generator of the etpo-tiny-coder training corpus: env prompts paired with ``build_model`` bodies.

Every example is ``(prompt, body)``: ``prompt`` is the env's observation text, made by
:func:`etpo_gym.task.build_prompt` or :func:`etpo_gym.task.build_reflection_prompt` (paper or rich style) for a
synthetic dataset (random domain, title, shape, columns, class balance, description) or a bundled one; ``body`` is
the text a policy writes after the prompt's trailing four spaces: first line unindented, the following lines
indented by four spaces, usually ending with ``return model``.

Three kinds of example (:data:`KINDS`):

* ``correct``: a working body -- one of 19 scikit-learn classifier families with ``predict_proba``, an optional
  preprocessing pipeline (scalers, imputer, polynomial features, feature selection, PCA, one-hot encoding of the
  rich prompt's categorical columns), hyper-parameters from good to poor;
* ``mistake``: a first-turn body with a realistic bug (missing ``fit``, a classifier without ``predict_proba``,
  a wrong import path, a misspelled argument, a missing import, ``fit`` without labels, an unclosed parenthesis,
  an invalid parameter value). These teach the policy to fail sometimes, so that RL has something to improve;
* ``reflection``: the env's reflection prompt for such a bug, with the real error message (the buggy body is run
  in-process on random data of the prompt's shape), and the corrected body as completion.

The generator is deterministic for a seed (random data for the error messages included).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from etpo_gym import task
from etpo_gym.datasets import BUNDLED_DATASETS, load_dataset

KINDS = ("correct", "mistake", "reflection")

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


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Mixture of the corpus."""

    mistake_share: float = 0.13
    """Share of ``mistake`` examples: first-turn bodies with a bug. Drives the model's executable rate."""
    reflection_share: float = 0.22
    """Share of ``reflection`` examples: reflection prompt with a real error message, completion = the fix."""
    rich_share: float = 0.3
    """Share of rich-style prompts (the env's default is the paper style)."""
    bundled_share: float = 0.08
    """Share of prompts made for the bundled datasets instead of synthetic ones."""

    def __post_init__(self) -> None:
        for name in ("mistake_share", "reflection_share", "rich_share", "bundled_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mistake_share + self.reflection_share > 1.0:
            raise ValueError("mistake_share + reflection_share must be <= 1; lower one of them")


@dataclasses.dataclass(frozen=True)
class Example:
    """One training pair.

    Attributes:
        prompt: the env's observation text (ends with four spaces).
        body: the completion (first line unindented, the rest indented by four spaces).
        kind: one of :data:`KINDS`.
        family: class name of the body's final classifier, e.g. ``"RandomForestClassifier"``.
        mistake: bug type for ``mistake`` / ``reflection`` examples (of the failed body), else ``None``.
    """

    prompt: str
    body: str
    kind: str
    family: str
    mistake: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Synthetic datasets: duck-typed stand-ins for TabularDataset with what build_prompt reads.


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticDataset:
    """What :func:`etpo_gym.task.build_prompt` reads from a :class:`~etpo_gym.datasets.TabularDataset`."""

    name: str
    title: str
    description: str
    feature_names: tuple[str, ...]
    feature_kinds: tuple[str, ...]
    class_names: tuple[str, ...]
    y: np.ndarray
    num_train_rows: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_shape(self) -> tuple[int, int]:
        return (self.num_train_rows, len(self.feature_names))


def _split(text: str) -> list[str]:
    return text.split(", ")


_DOMAINS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # domain: (titles, column names, subjects of the description)
    "medical": (
        _split(
            "Heart Disease, Stroke, Hepatitis, Liver Patient, Thyroid, Parkinsons, Chronic Kidney "
            "Disease, Cervical Cancer, Hypertension, Sepsis, Appendicitis, Lung Cancer, Anemia, "
            "Obesity Level, Covid Severity, Dementia, Migraine, Asthma, Malaria, Fetal Health"
        ),
        _split(
            "age, sex, bmi, glucose, insulin, blood_pressure, cholesterol, heart_rate, smoker, "
            "temperature, cough, fatigue, albumin, bilirubin, creatinine, hemoglobin, platelets, "
            "wbc_count, oxygen_saturation, chest_pain_type, exercise_angina, st_depression, "
            "family_history, alcohol, systolic_bp, diastolic_bp, tumor_size, ph, urea, sodium, "
            "potassium, calcium"
        ),
        _split("patients, hospital admissions, clinical visits, children, adults over 40, lab measurements"),
    ),
    "finance": (
        _split(
            "Loan Default, Credit Card Fraud, Bank Marketing, Credit Approval, Bankruptcy, "
            "Insurance Claim, Mortgage Risk, Stock Movement, Microfinance Repayment, Tax Audit"
        ),
        _split(
            "income, loan_amount, term, interest_rate, credit_score, debt_ratio, employment_years, "
            "num_accounts, balance, duration, housing, savings, checking_status, purpose, age, "
            "installment_rate, num_dependents, transaction_amount, hour, merchant_category, "
            "open_lines, delinquencies, property_value, marital_status, education, job"
        ),
        _split("loan applications, bank customers, card transactions, companies, policy holders"),
    ),
    "customer": (
        _split(
            "Customer Churn, Telco Churn, Employee Attrition, Online Shoppers Intention, Hotel "
            "Booking, Ad Click, Subscription Renewal, Airline Passenger Satisfaction, Job Change, "
            "Coupon Acceptance"
        ),
        _split(
            "tenure, monthly_charges, total_charges, contract, payment_method, gender, "
            "senior_citizen, num_products, support_calls, region, satisfaction, page_values, "
            "bounce_rate, visit_month, weekend, lead_time, adults, children, room_type, daily_rate, "
            "overtime, job_level, years_at_company, distance_from_home, flight_distance, "
            "seat_comfort, delay_minutes"
        ),
        _split("customers, users, employees, bookings, sessions, passengers"),
    ),
    "science": (
        _split(
            "Wine Quality, Mushroom Edibility, Glass Identification, Seeds, Ionosphere, Sonar, "
            "Magic Gamma, Pulsar Star, Water Potability, Forest Cover, Yeast, Ecoli, Abalone Age, "
            "Banknote, Steel Plates Faults, Raisin, Dry Bean, Rice Variety, Occupancy Detection, "
            "Room Occupancy"
        ),
        _split(
            "alcohol, acidity, density, sulphates, ph, area, perimeter, compactness, length, width, "
            "asymmetry, variance, skewness, kurtosis, entropy, elevation, slope, aspect, hardness, "
            "solids, chloramines, turbidity, co2, humidity, light, energy, radius, eccentricity, "
            "solidity, roundness, cap_shape, odor, gill_size, ring_type, habitat"
        ),
        _split("samples, measurements, specimens, observations, sensor readings, images"),
    ),
    "misc": (
        _split(
            "Titanic Survival, Adult Income, Student Performance, Car Evaluation, Nursery, Voting "
            "Records, Spam Detection, Phishing Website, Online News Popularity, Game Outcome, "
            "Traffic Accident Severity, Crop Recommendation, Weather Rain, Flight Delay, Football "
            "Match"
        ),
        _split(
            "pclass, fare, embarked, cabin_deck, age, workclass, education_num, capital_gain, "
            "hours_per_week, study_time, failures, absences, buying, maint, doors, safety, "
            "num_links, url_length, has_https, word_count, num_images, rain_today, wind_speed, "
            "pressure, humidity, month, day_of_week, distance, home_goals, away_goals, speed_limit, "
            "light_conditions"
        ),
        _split("records, people, students, websites, articles, matches, days, flights"),
    ),
}

_TARGETS = [
    ("whether the outcome is positive", ("0", "1")),
    ("the diagnosis", ("negative", "positive")),
    ("whether the customer leaves", ("no", "yes")),
    ("the class label", ("False", "True")),
    ("the risk level", ("low", "medium", "high")),
    ("the category", ("A", "B", "C", "D")),
    ("the quality grade", ("3", "4", "5", "6", "7")),
    ("the type", ("1", "2", "3")),
    ("the outcome", ("bad", "good")),
    ("whether the event happens", ("0", "1")),
]

_SENTENCES = [
    "The data were collected from {subject} over several years.",
    "Each row describes one of the {subject} and the goal is to predict {target}.",
    "We want to build a classifier that predicts {target} from {num} attributes.",
    "Features include {a}, {b} and {c}.",
    "Some attributes are categorical and were label-encoded.",
    "The dataset is a popular benchmark for tabular classification.",
    "Predicting {target} early helps practitioners make better decisions.",
    "Can we predict {target} from the available information?",
    "Measurements such as {a} and {b} are known to be informative.",
    "The target is {target}.",
    "Missing values were removed before the analysis.",
    "This dataset contains {num} features describing {subject}.",
]


def make_synthetic_dataset(rng: np.random.Generator) -> SyntheticDataset:
    """A random dataset description: domain, title, shape, columns, classes, balance and description."""
    domain = str(rng.choice(list(_DOMAINS)))
    titles, columns, subjects = _DOMAINS[domain]
    title = str(rng.choice(titles))
    num_features = int(np.clip(np.round(np.exp(rng.uniform(np.log(2), np.log(64)))), 2, 64))
    num_rows = int(np.round(np.exp(rng.uniform(np.log(40), np.log(4000)))))
    names = list(rng.permutation(columns))
    if num_features > len(names) or rng.random() < 0.15:
        names = [f"{rng.choice(['x', 'f', 'feature_', 'var', 'V', 'attr'])}{i}" for i in range(num_features)]
    names = [str(n) for n in names[:num_features]]
    kinds = tuple("categorical" if rng.random() < rng.choice([0.0, 0.2, 0.5]) else "numeric" for _ in names)
    target_text, class_names = _TARGETS[int(rng.integers(len(_TARGETS)))]
    # Class balance: draw shares, then a small y whose bincount gives them (what the rich prompt prints).
    shares = rng.dirichlet(np.full(len(class_names), float(rng.choice([0.8, 3.0, 20.0]))))
    shares = np.maximum(shares, 0.03)
    y = np.repeat(np.arange(len(class_names)), np.round(shares / shares.sum() * 1000).astype(int))
    fill = {"subject": str(rng.choice(subjects)), "target": target_text, "num": num_features}
    fill.update(a=names[0], b=names[min(1, len(names) - 1)], c=names[-1])
    num_sentences = int(rng.integers(0, 5))
    description = " ".join(str(s).format(**fill) for s in rng.choice(_SENTENCES, size=num_sentences, replace=False))
    slug = title.lower().replace(" ", "_")
    return SyntheticDataset(slug, title, description, tuple(names), kinds, class_names, y, num_rows)


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


# ---------------------------------------------------------------------------------------------------------------
# Mistakes: each turns a correct body into a buggy one (the correct body is the fix), or returns None.

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


# ---------------------------------------------------------------------------------------------------------------


def _prompt_dataset(rng: np.random.Generator, config: CorpusConfig, bundled: list):
    if rng.random() < config.bundled_share:
        return bundled[int(rng.integers(len(bundled)))]
    return make_synthetic_dataset(rng)


def generate(num_examples: int, seed: int = 0, config: CorpusConfig | None = None) -> Iterator[Example]:
    """Yield ``num_examples`` training examples, deterministically for ``seed``.

    Args:
        num_examples: number of examples.
        seed: seed of every random choice (datasets, bodies, mistakes, the random data behind error messages).
        config: the mixture; defaults to :class:`CorpusConfig`.
    """
    config = config or CorpusConfig()
    rng = np.random.default_rng(seed)
    bundled = [load_dataset(name) for name in BUNDLED_DATASETS]
    produced = 0
    while produced < num_examples:
        dataset = _prompt_dataset(rng, config, bundled)
        style = "rich" if rng.random() < config.rich_share else "paper"
        draw = rng.random()
        if draw < config.mistake_share + config.reflection_share:
            sampled = sample_mistake(rng, dataset, style)
            if sampled is None:
                continue
            broken, fixed, error, mistake, family = sampled
            if draw < config.mistake_share:
                example = Example(task.build_prompt(dataset, style), broken, "mistake", family, mistake)
            else:
                prompt = task.build_reflection_prompt(dataset, broken, error, style)
                example = Example(prompt, fixed, "reflection", family, mistake)
        else:
            body, family = sample_body(rng, dataset, style)
            example = Example(task.build_prompt(dataset, style), body.render(), "correct", family)
        produced += 1
        yield example
