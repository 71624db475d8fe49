"""Seeded generator of the etpo-tiny-coder training corpus: env prompts paired with ``build_model`` bodies.

Every example is ``(prompt, body)``: ``prompt`` is the env's observation text, made by
:func:`etpo_gym.task.build_prompt` or :func:`etpo_gym.task.build_reflection_prompt` (paper or rich style) for a
synthetic dataset (random domain, title, shape, columns, class balance, description) or a bundled one; ``body`` is
the text a policy writes after the prompt's trailing four spaces: first line unindented, the following lines
indented by four spaces, usually ending with ``return model``.

Three kinds of example (:data:`KINDS`):

* ``correct``: a working body -- one of 18 scikit-learn classifier families with ``predict_proba``, an optional
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
from collections.abc import Iterator

import numpy as np

from etpo_agents.tiny_coder.mistakes import sample_mistake
from etpo_agents.tiny_coder.programs import sample_body
from etpo_gym import task
from etpo_gym.datasets import BUNDLED_DATASETS, load_dataset

KINDS = ("correct", "mistake", "reflection")


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
