"""Tabular classification datasets for the data-science task.

Three sources, one result type (:class:`TabularDataset`):

* **bundled** (offline, package data under ``etpo_gym/data``): the paper's four Kaggle datasets and three of its
  OpenML datasets from public copies of the same data;
* **sklearn** (offline): scikit-learn's bundled classification sets;
* **openml** (needs the ``openml`` package and network or a populated OpenML cache): the paper's other seven OpenML
  datasets, by their CAAFE names;
* **user data**: a ``pandas.DataFrame`` or a CSV path with ``target=``.

Names match case-insensitively and in the env ids' spelling: ``Pharyngitis``, ``KidneyStone``, ``kidney-stone`` all
name ``kidney_stone`` (:func:`canonical_name`).

Preprocessing follows the paper's loaders (``data_utils.py`` of the official code), step by step:

1. drop the id column; in user data, drop row-index columns (an unnamed leading column, as ``DataFrame.to_csv()``
   and R write, or a column equal to a 0- or 1-based row counter) with a warning, unless ``keep_index_columns``:
   an index of a file sorted by its target predicts the target;
2. drop every row with a NaN (``dropna``) or, in user data, a ±inf;
3. keep the first 2,000 rows (``max_rows``) -- the paper caps health_insurance and spaceship_titanic, CAAFE caps
   every OpenML set;
4. label-encode every non-numeric feature column (ordinal codes, sorted category order, as ``LabelEncoder``);
5. label-encode the target to ``0..K-1``.

DEVIATION: CAAFE keeps only 10% of breast-w (and 20% of balance-scale, 10% of tic-tac-toe). We keep the full
sets: subsampling is a CAAFE speed trick, and 70 rows make the AUC reward noisy.

DEVIATION (leakage-safe evaluation): the official code reports the AUC of the same 5 splits it optimises. Here a
stratified 20% **held-out test split** (seed 0) is set aside once per dataset; the reward's 5 random 50/50 splits
are drawn from the remaining 80% (the *reward pool*) and the held-out split is only used to report
``info["test_auc"]``.

Checks beyond the paper: a target that looks continuous (regression) is rejected, and a single feature whose ROC
AUC alone is >= :data:`LEAK_AUC` (a likely copy of the target) is named in a warning, not dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import gzip
import os
import re
import warnings
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pandas as pd

MAX_ROWS = 2000
"""Row cap of the paper's loaders (after ``dropna``)."""

MIN_ROWS_PER_CLASS = 10
"""Fewer rows than this in a class and a held-out or 50/50 split may miss the class: rejected at load time."""

HELD_OUT_FRACTION = 0.2
"""Share of rows kept out of the reward for ``info["test_auc"]``."""

MAX_CLASSES_NUMERIC_TARGET = 20
"""A numeric target with more distinct values than this, float or with a class too rare to split, is taken for a
regression target and rejected (the task is classification scored by ROC AUC)."""

LEAK_AUC = 0.99
"""A feature whose single-feature ROC AUC (either orientation; one-vs-rest mean for several classes) reaches this
separates the classes almost perfectly on its own: likely the target leaked into the features, so it is warned
about at load time."""


@dataclasses.dataclass(frozen=True)
class _BundledSpec:
    file: str
    target: str
    title: str
    drop: tuple[str, ...] = ()


# Titles are the paper's ``data_disc`` strings (shown in the paper-style prompt).
_BUNDLED: dict[str, _BundledSpec] = {
    "pharyngitis": _BundledSpec("pharyngitis.csv.gz", "radt", "Pharyngitis", ("number",)),
    "kidney_stone": _BundledSpec("kidney_stone.csv.gz", "target", "Kidney Stone", ("id",)),
    "health_insurance": _BundledSpec("health_insurance.csv.gz", "Response", "Health Insurance", ("ID",)),
    "spaceship_titanic": _BundledSpec("spaceship_titanic.csv.gz", "Transported", "Spaceship Titanic", ("PassengerId",)),
    "credit_g": _BundledSpec("credit_g.csv.gz", "class", "German Credit"),
    "diabetes": _BundledSpec("diabetes.csv.gz", "class", "Diabetes"),
    "breast_w": _BundledSpec("breast_w.csv.gz", "Class", "Breast Cancer Wisconsin"),
}

_SKLEARN: dict[str, str] = {
    "breast_cancer": "Breast Cancer Wisconsin (Diagnostic)",
    "wine": "Wine",
    "iris": "Iris",
    "digits": "Handwritten Digits",
}

# CAAFE names -> (OpenML data id, paper title). ids from the paper / CAAFE benchmark list.
_OPENML: dict[str, tuple[int, str]] = {
    "balance_scale": (11, "Balance Scale Weight & Distance"),
    "cmc": (23, "National Indonesia Contraceptive Prevalence"),
    "tic_tac_toe": (50, "Tic-Tac-Toe Endgame"),
    "eucalyptus": (188, "Eucalyptus Soil Conservation"),
    "pc1": (1068, "PC1 Software Defect"),
    "airlines": (1169, "Airlines"),
    "jungle_chess": (41027, "Jungle Chess"),
}

BUNDLED_DATASETS: tuple[str, ...] = tuple(_BUNDLED)
"""Names of the datasets shipped with the package; the env's default dataset list."""

_KNOWN_NAMES = frozenset(_BUNDLED) | frozenset(_SKLEARN) | frozenset(_OPENML)
"""Every name :func:`list_datasets` lists (without probing the OpenML cache)."""


def _name_key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name).lower()


_NAME_KEYS = {_name_key(name): name for name in _KNOWN_NAMES}


def canonical_name(name: str) -> str | None:
    """The dataset name that ``name`` spells, ignoring case, ``_``, ``-`` and spaces, or ``None``.

    >>> canonical_name("KidneyStone"), canonical_name("kidney-stone"), canonical_name("Pharyngitis")
    ('kidney_stone', 'kidney_stone', 'pharyngitis')
    """
    return _NAME_KEYS.get(_name_key(name))


def suggest_names(name: str) -> list[str]:
    """Known dataset names close to ``name`` (for "did you mean" messages), best first."""
    keys = difflib.get_close_matches(_name_key(name), list(_NAME_KEYS), n=3, cutoff=0.6)
    return [_NAME_KEYS[key] for key in keys]


@dataclasses.dataclass(frozen=True, eq=False)
class TabularDataset:
    """A preprocessed classification dataset split into a reward pool and a held-out test split.

    Attributes:
        name: lowercase identifier, e.g. ``"pharyngitis"``.
        title: short human title (the paper's ``data_disc``), e.g. ``"Pharyngitis"``.
        description: free-text task description (may be empty).
        feature_names: one name per column of ``x``.
        feature_kinds: ``"numeric"`` or ``"categorical"`` (label-encoded) per column.
        class_names: original label of each encoded class ``0..K-1``.
        x: reward pool features, float64 of shape (N, F).
        y: reward pool labels, int64 of shape (N,).
        x_test: held-out features, float64 of shape (M, F); never seen by the reward.
        y_test: held-out labels, int64 of shape (M,).
    """

    name: str
    title: str
    description: str
    feature_names: tuple[str, ...]
    feature_kinds: tuple[str, ...]
    class_names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_shape(self) -> tuple[int, int]:
        """Shape of ``x_train`` that ``build_model`` receives: the train half of a 50/50 split of the pool."""
        num_rows = self.x.shape[0]
        return (num_rows - int(np.ceil(0.5 * num_rows)), self.x.shape[1])

    @functools.cached_property
    def fingerprint(self) -> str:
        """Content hash of the data, used as the executor's cache key (two datasets with equal data share it)."""
        import hashlib

        digest = hashlib.sha256()
        for array in (self.x, self.y, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
            digest.update(str(array.shape).encode())
        return f"{self.name}-{digest.hexdigest()[:16]}"


class DatasetError(ValueError):
    """Raised for unknown dataset names, unreachable OpenML data and unusable user data."""


def list_datasets(offline_only: bool = False) -> dict[str, dict[str, object]]:
    """Every dataset name the env accepts, with where it comes from and whether it is usable offline.

    Returns:
        ``{name: {"source": "bundled" | "sklearn" | "openml", "offline": bool, "title": str}}``. OpenML sets are
        ``offline`` only when the ``openml`` package finds them in its local cache.
    """
    table: dict[str, dict[str, object]] = {}
    for name, spec in _BUNDLED.items():
        table[name] = {"source": "bundled", "offline": True, "title": spec.title}
    for name, title in _SKLEARN.items():
        table[name] = {"source": "sklearn", "offline": True, "title": title}
    for name, (data_id, title) in _OPENML.items():
        table[name] = {"source": "openml", "offline": _openml_cached(data_id), "title": title}
    if offline_only:
        table = {name: row for name, row in table.items() if row["offline"]}
    return table


def load_dataset(
    dataset: str | os.PathLike | pd.DataFrame,
    *,
    target: str | None = None,
    description: str | None = None,
    name: str | None = None,
    max_rows: int = MAX_ROWS,
    keep_index_columns: bool = False,
) -> TabularDataset:
    """Load and preprocess a dataset by name, CSV path or DataFrame.

    Args:
        dataset: a name from :func:`list_datasets` (any case, or the env ids' spelling such as ``KidneyStone``),
            a path to a CSV file, or a DataFrame.
        target: target column; required for paths and DataFrames. A named dataset has its own target: passing
            another one is an error.
        description: task description shown in the rich prompt; defaults to the bundled text, if any.
        name: identifier for user data (default: the file stem, or ``"custom"``).
        max_rows: row cap after ``dropna`` (the paper's 2,000).
        keep_index_columns: keep the row-index columns of user data (step 1 of the module docstring) as features.

    Raises:
        DatasetError: unknown name (with close names suggested), ``target`` given for a named dataset, OpenML
            unreachable, or data unusable for the task (missing target, continuous target, one class, too few
            rows, empty frame, unparseable file, no feature columns).
    """
    if isinstance(dataset, (str, os.PathLike)):
        canonical = canonical_name(os.fspath(dataset))
        if canonical is not None:
            return _load_named_checked(canonical, target, description, max_rows)
    if isinstance(dataset, pd.DataFrame) or (isinstance(dataset, (str, os.PathLike)) and _looks_like_path(dataset)):
        return _load_user(dataset, target=target, description=description, name=name, max_rows=max_rows,
                          keep_index_columns=keep_index_columns)  # fmt: skip
    if not isinstance(dataset, str):
        raise DatasetError(f"dataset must be a name, a CSV path or a pandas DataFrame, got {type(dataset).__name__}")
    close = suggest_names(dataset)
    hint = f" Did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    raise DatasetError(
        f"unknown dataset {dataset!r}.{hint} Known names: {', '.join(sorted(_KNOWN_NAMES))}; or pass a CSV path "
        "or a DataFrame with target=<column>"
    )


def _load_named_checked(dataset: str, target: str | None, description: str | None, max_rows: int) -> TabularDataset:
    """A named dataset, rejecting a ``target`` other than its own, with ``description`` replacing its text."""
    own_target = {**{n: s.target for n, s in _BUNDLED.items()}, **dict.fromkeys(_SKLEARN, "target")}.get(dataset)
    if target is not None and own_target is not None and target != own_target:
        raise DatasetError(
            f"target={target!r} was given with the named dataset {dataset!r}, whose target is {own_target!r}; "
            "target= is for CSV paths and DataFrames (pass the file's path to use another column)"
        )
    if target is not None and dataset in _OPENML:
        raise DatasetError(
            f"target={target!r} was given with the OpenML dataset {dataset!r}, which uses its default target; "
            "target= is for CSV paths and DataFrames"
        )
    data = _load_named(dataset, max_rows)
    return data if description is None else dataclasses.replace(data, description=description)


@functools.lru_cache(maxsize=32)
def _load_named(dataset: str, max_rows: int) -> TabularDataset:
    if dataset in _BUNDLED:
        spec = _BUNDLED[dataset]
        with resources.files("etpo_gym").joinpath("data", spec.file).open("rb") as handle:
            frame = pd.read_csv(handle, compression="gzip")
        frame = frame.drop(columns=list(spec.drop))
        return _preprocess(frame, spec.target, dataset, spec.title, _bundled_description(dataset), max_rows)
    if dataset in _SKLEARN:
        return _load_sklearn(dataset, max_rows)
    return _load_openml(dataset, max_rows)


def _bundled_description(dataset: str) -> str:
    path = resources.files("etpo_gym").joinpath("data", "descriptions", f"{dataset}.txt")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def _looks_like_path(dataset: str | os.PathLike) -> bool:
    text = os.fspath(dataset)
    return os.sep in text or text.endswith((".csv", ".csv.gz", ".tsv")) or os.path.exists(text)


def _load_user(dataset, *, target, description, name, max_rows, keep_index_columns) -> TabularDataset:
    if isinstance(dataset, pd.DataFrame):
        frame = dataset.copy()
        name = name or "custom"
    else:
        path = os.fspath(dataset)
        if os.path.isdir(path):
            raise DatasetError(f"dataset path {path!r} is a directory; pass a CSV file")
        if not os.path.isfile(path):
            raise DatasetError(f"dataset file {path!r} does not exist")
        try:
            frame = _read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
            raise DatasetError(f"could not parse {path!r} as CSV: {error}") from error
        name = name or os.path.basename(path).split(".")[0].lower()
    if target is None:
        raise DatasetError("user data needs target=<column name>")
    title = name.replace("_", " ").title()
    return _preprocess(frame, target, name, title, description or "", max_rows, drop_index=not keep_index_columns)


def _read_csv(path: str, max_rows: int = 200_000, max_header_bytes: int = 64 * 1024) -> pd.DataFrame:
    """The first ``max_rows`` rows of a CSV/TSV (optionally gzipped) with its separator sniffed from the header line,
    as ``sep=None`` does, but parsed by pandas' C engine with exact float round trip (the python engine that
    ``sep=None`` needs rounds the last digit on some pandas versions, and is slow on big files).

    Raises:
        ValueError: the header line is longer than ``max_header_bytes`` (thousands of columns: not a tabular
            classification task, and parsing such a file can take minutes).
    """
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", newline="", errors="replace") as handle:
        sample = handle.read(max_header_bytes)
    header = sample.split("\n", 1)[0]
    if len(header) == len(sample) == max_header_bytes:
        raise ValueError(f"its header line is longer than {max_header_bytes // 1024} KiB (too many columns)")
    try:
        separator = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        separator = ","
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}  # pandas 3: default
    return pd.read_csv(path, sep=separator, nrows=max_rows, **exact)


def _load_sklearn(dataset: str, max_rows: int) -> TabularDataset:
    from sklearn import datasets as sk_datasets

    bunch = getattr(sk_datasets, f"load_{dataset}")(as_frame=True)
    frame = bunch.frame.copy()
    frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    # scikit-learn's DESCR is reStructuredText about the file, not a task description: the prompt gets none.
    return _preprocess(frame, "target", dataset, _SKLEARN[dataset], "", max_rows)


def _load_openml(dataset: str, max_rows: int) -> TabularDataset:
    data_id, title = _OPENML[dataset]
    try:
        import openml
    except ImportError as error:
        raise DatasetError(
            f"dataset {dataset!r} comes from OpenML (id {data_id}) and needs the openml package: `pip install "
            'openml` (in a checkout of etpo-gym: `pip install -e ".[openml]"`), then run once with network access '
            "(the data is then cached)."
        ) from error
    try:
        remote = openml.datasets.get_dataset(data_id, download_data=True)
        frame, *_ = remote.get_data(dataset_format="dataframe")
    except Exception as error:  # openml raises many types for network / cache failures
        raise DatasetError(
            f"could not fetch OpenML dataset {dataset!r} (id {data_id}): {error}. It needs network access once, "
            "after which openml's cache serves it offline."
        ) from error
    return _preprocess(frame, remote.default_target_attribute, dataset, title, remote.description or "", max_rows)


def _openml_cached(data_id: int) -> bool:
    try:
        import openml
    except ImportError:
        return False
    cache = os.path.join(os.path.expanduser(openml.config.get_cache_directory()), "datasets", str(data_id))
    return os.path.isdir(cache)


def index_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of ``frame`` that are row indices: an unnamed leading column (pandas reads the index that
    ``DataFrame.to_csv()`` and R write as ``Unnamed: 0``) or a column equal to a 0- or 1-based row counter."""
    found = []
    for position, column in enumerate(frame.columns):
        values = frame[column]
        unnamed = position == 0 and (str(column) == "" or str(column).startswith("Unnamed: 0"))
        counter = (
            pd.api.types.is_numeric_dtype(values)
            and not pd.api.types.is_bool_dtype(values)
            and len(values) > 1
            and bool(values.notna().all())
            and any(np.array_equal(values.to_numpy(), np.arange(start, start + len(values))) for start in (0, 1))
        )
        if unnamed or counter:
            found.append(column)
    return found


def _check_continuous(labels: pd.Series, target: str, counts: np.ndarray) -> None:
    """Reject a target that looks like a regression target (:data:`MAX_CLASSES_NUMERIC_TARGET`)."""
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if numeric and len(counts) > MAX_CLASSES_NUMERIC_TARGET:
        if pd.api.types.is_float_dtype(labels) or counts.min() < MIN_ROWS_PER_CLASS:
            raise DatasetError(
                f"regression is not supported: target {target!r} looks continuous ({len(counts)} distinct values); "
                "the task is classification, so give a categorical target (or bin this one into classes)"
            )


def single_feature_aucs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of each feature used alone as the score, in its better orientation: ``max(AUC, 1 - AUC)``.

    Several classes: the mean over classes of the one-vs-rest AUC (each in its better orientation). Ties count
    half, as in ``sklearn.metrics.roc_auc_score``.

    Args:
        x: features, shape (N, F).
        y: labels ``0..K-1``, shape (N,).

    Returns:
        AUCs in [0.5, 1], shape (F,).
    """
    from scipy.stats import rankdata

    ranks = rankdata(x, axis=0)  # (N, F), average ranks for ties
    classes = np.unique(y)
    per_class = []
    for k in classes[1:] if len(classes) == 2 else classes:
        positive = y == k
        num_pos, num_neg = int(positive.sum()), int((~positive).sum())
        auc = (ranks[positive].sum(axis=0) - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)  # (F,)
        per_class.append(np.maximum(auc, 1 - auc))
    return np.mean(per_class, axis=0)


def _preprocess(
    frame: pd.DataFrame,
    target: str,
    name: str,
    title: str,
    description: str,
    max_rows: int,
    drop_index: bool = False,
) -> TabularDataset:
    """Steps 1 (index columns, when ``drop_index``) to 5 of the module docstring, the validation, the leak warning
    and the held-out split."""
    if frame.empty or frame.shape[1] == 0:
        raise DatasetError(f"dataset {name!r} is empty")
    if target not in frame.columns:
        raise DatasetError(f"target column {target!r} not in dataset {name!r}; columns: {list(frame.columns)}")
    indices = [c for c in index_columns(frame) if c != target] if drop_index else []
    if frame.shape[1] < 2:
        raise DatasetError(f"dataset {name!r} has no feature columns besides the target {target!r}")
    frame = frame.replace([np.inf, -np.inf], np.nan)  # ±inf: dropped with the NaN rows (estimators reject both)
    frame = frame.dropna(axis=0, how="any").iloc[:max_rows].reset_index(drop=True)
    labels = frame[target]
    if len(frame) == 0:
        raise DatasetError(f"dataset {name!r} has no row without NaN")
    class_names, y = np.unique(labels.astype(str).to_numpy(), return_inverse=True)
    if len(class_names) < 2:
        raise DatasetError(f"dataset {name!r} has a single class in {target!r} ({class_names[0]!r}); need >= 2")
    counts = np.bincount(y)
    _check_continuous(labels, target, counts)
    if counts.min() < MIN_ROWS_PER_CLASS:
        rare = class_names[int(np.argmin(counts))]
        raise DatasetError(
            f"dataset {name!r}: class {rare!r} has {counts.min()} rows after dropna; each class needs at least "
            f"{MIN_ROWS_PER_CLASS} so that every split sees it"
        )
    if indices:
        warnings.warn(
            f"dataset {name!r}: dropped the row-index column(s) {[str(c) for c in indices]} (an unnamed leading "
            "column or a row counter is no feature, and in a file sorted by its target it leaks the label); pass "
            "keep_index_columns=True (--keep-index-columns on the command line) to keep them",
            UserWarning,
            stacklevel=2,  # one fixed location: Python shows the same warning once, however often the data is loaded
        )
        if frame.shape[1] - len(indices) < 2:
            raise DatasetError(
                f"dataset {name!r} has no feature columns besides the target {target!r} and the row-index column(s) "
                f"{[str(c) for c in indices]} (keep_index_columns=True keeps them)"
            )
    features = frame.drop(columns=[target, *indices])
    columns, kinds = [], []
    for column in features.columns:
        values = features[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            _, codes = np.unique(values.astype(str).to_numpy(), return_inverse=True)
            columns.append(codes.astype(np.float64))
            kinds.append("categorical")
        else:
            columns.append(values.to_numpy(dtype=np.float64))
            kinds.append("numeric")
    x = np.column_stack(columns)
    _warn_leaks(x, y, features.columns, name)
    from sklearn.model_selection import train_test_split

    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=HELD_OUT_FRACTION, random_state=0, shuffle=True, stratify=y
    )
    arrays = [np.ascontiguousarray(a) for a in (x_pool, y_pool.astype(np.int64), x_test, y_test.astype(np.int64))]
    for array in arrays:
        array.setflags(write=False)
    return TabularDataset(
        name=name,
        title=title,
        description=description,
        feature_names=tuple(str(c) for c in features.columns),
        feature_kinds=tuple(kinds),
        class_names=tuple(str(c) for c in class_names),
        x=arrays[0],
        y=arrays[1],
        x_test=arrays[2],
        y_test=arrays[3],
    )


def _warn_leaks(x: np.ndarray, y: np.ndarray, columns: Sequence, name: str) -> None:
    """Warn about features that alone separate the classes almost perfectly (:data:`LEAK_AUC`); they are kept."""
    aucs = single_feature_aucs(x, y)
    leaks = [f"{column!r} (AUC {auc:.3f})" for column, auc in zip(columns, aucs, strict=True) if auc >= LEAK_AUC]
    if leaks:
        warnings.warn(
            f"dataset {name!r}: feature(s) {', '.join(leaks)} alone separate the classes almost perfectly; check "
            "that they are not the target (or computed from it) under another name. They are kept.",
            UserWarning,
            stacklevel=3,  # a fixed location in this module: shown once however often the data is loaded
        )


def resolve_datasets(
    datasets: str | os.PathLike | pd.DataFrame | Sequence[str] | None,
    *,
    target: str | None = None,
    description: str | None = None,
    name: str | None = None,
    keep_index_columns: bool = False,
) -> list[TabularDataset]:
    """The env's ``dataset=`` argument as a list: ``None`` = every bundled dataset, one spec, or a list of names.

    ``target``, ``description``, ``name`` and ``keep_index_columns`` are :func:`load_dataset`'s.
    """
    if datasets is None:
        datasets = BUNDLED_DATASETS
    options = {"target": target, "description": description, "name": name, "keep_index_columns": keep_index_columns}
    if isinstance(datasets, (str, os.PathLike, pd.DataFrame)):
        return [load_dataset(datasets, **options)]
    if not isinstance(datasets, (list, tuple)):
        raise DatasetError(
            f"dataset must be a name, a CSV path, a pandas DataFrame or a list of names, got {type(datasets).__name__}"
        )
    if len(datasets) == 0:
        raise DatasetError("dataset list is empty")
    return [load_dataset(d, **options) for d in datasets]
