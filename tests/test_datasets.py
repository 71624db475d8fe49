import numpy as np
import pandas as pd
import pytest

import etpo_gym
from etpo_gym.datasets import BUNDLED_DATASETS, DatasetError, load_dataset

OFFLINE = [
    "pharyngitis", "kidney_stone", "health_insurance", "spaceship_titanic", "credit_g", "diabetes", "breast_w",
    "breast_cancer", "wine", "iris", "digits",
]  # fmt: skip
OPENML = ["balance_scale", "cmc", "tic_tac_toe", "eucalyptus", "pc1", "airlines", "jungle_chess"]


def test_list_datasets_names_and_offline_flags():
    table = etpo_gym.list_datasets()
    assert set(table) == set(OFFLINE) | set(OPENML)
    assert all(table[name]["offline"] for name in OFFLINE)
    assert {table[name]["source"] for name in OPENML} == {"openml"}
    assert set(etpo_gym.list_datasets(offline_only=True)) >= set(OFFLINE)
    assert set(BUNDLED_DATASETS) == set(OFFLINE[:7])


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_datasets_are_preprocessed(name):
    data = load_dataset(name)
    assert data.x.dtype == np.float64 and data.y.dtype == np.int64
    assert np.isfinite(data.x).all() and np.isfinite(data.x_test).all()
    assert data.x.shape[1] == len(data.feature_names) == len(data.feature_kinds) == data.x_test.shape[1]
    assert set(np.unique(data.y)) == set(range(data.num_classes)) == set(np.unique(data.y_test))
    total = len(data.y) + len(data.y_test)
    assert total <= 2000
    assert abs(len(data.y_test) / total - 0.2) < 0.01
    assert not data.x.flags.writeable


def test_paper_preprocessing_pharyngitis_matches_manual_steps():
    raw = pd.read_csv(etpo_gym.datasets.resources.files("etpo_gym").joinpath("data", "pharyngitis.csv.gz"))
    clean = raw.drop(columns=["number"]).dropna()
    data = load_dataset("pharyngitis")
    assert len(data.y) + len(data.y_test) == len(clean)
    # rows are a permutation of the cleaned frame's rows
    expected = np.sort(clean.drop(columns=["radt"]).to_numpy(np.float64).sum(axis=1))
    got = np.sort(np.concatenate([data.x, data.x_test]).sum(axis=1))
    np.testing.assert_allclose(got, expected)


def test_categoricals_are_label_encoded():
    data = load_dataset("spaceship_titanic")
    kinds = dict(zip(data.feature_names, data.feature_kinds, strict=True))
    assert kinds["HomePlanet"] == "categorical" and kinds["Age"] == "numeric"
    assert data.class_names == ("False", "True")


def test_user_dataframe_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=200), "b": rng.choice(["x", "y"], 200), "label": rng.integers(0, 2, 200)}
    )
    data = load_dataset(frame, target="label", description="toy")
    assert data.name == "custom" and data.feature_kinds == ("numeric", "categorical") and data.description == "toy"
    path = tmp_path / "toy.csv"
    frame.to_csv(path, index=False, float_format="%.17g")  # exact round trip on any pandas
    from_csv = load_dataset(str(path), target="label")
    assert from_csv.name == "toy"
    np.testing.assert_array_equal(from_csv.x, data.x)


@pytest.mark.parametrize(
    "frame, target, match",
    [
        (pd.DataFrame(), "y", "empty"),
        (pd.DataFrame({"a": range(50), "y": [0, 1] * 25}), "missing", "not in dataset"),
        (pd.DataFrame({"a": range(50), "y": [1] * 50}), "y", "single class"),
        (pd.DataFrame({"a": range(12), "y": [0] * 6 + [1] * 6}), "y", "at least"),
        (pd.DataFrame({"a": [np.nan] * 30, "y": [0, 1] * 15}), "y", "no row without NaN"),
        (pd.DataFrame({"y": [0, 1] * 30}), "y", "no feature"),
    ],
)
def test_bad_user_data_raises_clear_error(frame, target, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(frame, target=target)


def test_bad_files_and_names(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.csv"), target="y")
    binary = tmp_path / "bad.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(DatasetError):
        load_dataset(str(binary), target="y")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("no_such_dataset")
    with pytest.raises(DatasetError, match="target="):
        load_dataset(pd.DataFrame({"a": [1, 2]}))


def test_openml_dataset_offline_gives_clear_error():
    if etpo_gym.list_datasets()["cmc"]["offline"]:
        pytest.skip("cmc is in the local OpenML cache")
    with pytest.raises(DatasetError, match="OpenML"):
        load_dataset("cmc")


# -- row-index columns, leaks, names, continuous targets (issue 14) -----------------------------------------------


def _sorted_by_target(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A noisy task whose rows are sorted by the label: a row index would predict it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    frame = pd.DataFrame({"a": x, "b": rng.choice(["u", "v"], rows), "label": (x + rng.normal(size=rows) > 0)})
    return frame.sort_values("label").reset_index(drop=True)


def test_csv_index_columns_are_dropped_with_a_warning_and_kept_on_request(tmp_path):
    frame = _sorted_by_target()
    frame.insert(0, "row_id", np.arange(1, len(frame) + 1))  # a 1-based counter (second column of the file)
    path = tmp_path / "sorted.csv"
    frame.to_csv(path)  # index=True: pandas reads it back as "Unnamed: 0"
    with pytest.warns(UserWarning, match=r"dropped the row-index column\(s\) \['Unnamed: 0', 'row_id'\]"):
        data = load_dataset(str(path), target="label")
    assert data.feature_names == ("a", "b")
    kept = load_dataset(str(path), target="label", keep_index_columns=True)
    assert kept.feature_names == ("Unnamed: 0", "row_id", "a", "b")


def test_unnamed_leading_column_is_dropped_even_when_shuffled(tmp_path):
    """``to_csv()`` of a shuffled frame writes a permuted index: no counter, but still an unnamed leading column."""
    frame = _sorted_by_target().sample(frac=1.0, random_state=0)
    path = tmp_path / "shuffled.csv"
    frame.to_csv(path)
    with pytest.warns(UserWarning, match="Unnamed: 0"):
        assert load_dataset(str(path), target="label").feature_names == ("a", "b")


def test_dataframe_counter_column_is_dropped_and_env_can_keep_it(executor):
    import gymnasium as gym

    frame = _sorted_by_target().reset_index()  # "index": 0..N-1
    with pytest.warns(UserWarning, match=r"\['index'\]"):
        assert load_dataset(frame, target="label").feature_names == ("a", "b")
    env = gym.make("ETPO-DataSciText-v0", dataset=frame, target="label", keep_index_columns=True, executor=executor)
    assert env.unwrapped.task.datasets[0].feature_names == ("index", "a", "b")
    env.close()


def test_single_feature_aucs_against_hand_computed_values_and_sklearn():
    from sklearn.metrics import roc_auc_score

    from etpo_gym.datasets import single_feature_aucs

    y = np.array([0, 0, 1, 1])
    x = np.array([[1, 4, 1, 1], [2, 3, 3, 1], [3, 2, 2, 1], [4, 1, 4, 1]], dtype=float)
    # column 2: positives {2, 4} beat negatives {1, 3} in 3 of 4 pairs; column 3: all tied, 0.5
    np.testing.assert_allclose(single_feature_aucs(x, y), [1.0, 1.0, 0.75, 0.5])
    rng = np.random.default_rng(0)
    x, y3 = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    x[:, 1] = np.round(x[:, 1])  # ties
    expected = [np.mean([max(a, 1 - a) for a in (roc_auc_score(y3 == k, x[:, j]) for k in range(3))]) for j in range(3)]
    np.testing.assert_allclose(single_feature_aucs(x, y3), expected)


def test_leaky_feature_is_named_in_a_warning_and_kept():
    frame = _sorted_by_target().sample(frac=1.0, random_state=1)
    frame["score"] = frame["label"].astype(float) * 2 + np.random.default_rng(1).normal(0, 0.1, len(frame))
    with pytest.warns(UserWarning, match=r"'score' \(AUC 1\.000\) alone separate"):
        data = load_dataset(frame, target="label")
    assert "score" in data.feature_names


def test_bundled_datasets_raise_no_leak_or_index_warning(recwarn):
    from etpo_gym.datasets import _load_named

    _load_named.cache_clear()
    for name in ("pharyngitis", "kidney_stone", "credit_g", "diabetes"):
        load_dataset(name)
    assert not [w for w in recwarn if "alone separate" in str(w.message) or "row-index" in str(w.message)]


@pytest.mark.parametrize("spelling", ["KidneyStone", "kidney-stone", "KIDNEY_STONE", "Kidney Stone"])
def test_dataset_names_match_case_insensitively_and_in_env_id_spelling(spelling, executor):
    import gymnasium as gym

    from etpo_gym.datasets import canonical_name

    assert canonical_name(spelling) == "kidney_stone"
    assert load_dataset(spelling).name == "kidney_stone"
    env = gym.make("ETPO-DataSciText-v0", dataset=spelling, executor=executor)
    assert env.reset(seed=0)[1]["dataset"] == "kidney_stone"
    env.close()


def test_unknown_dataset_name_suggests_close_names():
    with pytest.raises(DatasetError, match="Did you mean 'pharyngitis'"):
        load_dataset("pharyngitus")
    with pytest.raises(DatasetError, match="unknown dataset 'zzz'. Known names"):
        load_dataset("zzz")


@pytest.mark.parametrize("values", ["float", "int"])
def test_continuous_target_is_rejected_as_regression(values):
    rng = np.random.default_rng(0)
    target = rng.normal(100, 20, 300) if values == "float" else rng.integers(0, 5000, 300)
    frame = pd.DataFrame({"a": rng.normal(size=300), "price": target})
    distinct = len(np.unique(target))
    with pytest.raises(
        DatasetError,
        match=rf"regression is not supported: target 'price' looks continuous \({distinct} distinct values\)",
    ):
        load_dataset(frame, target="price")


def test_integer_target_with_many_well_populated_classes_is_classification():
    frame = pd.DataFrame({"a": np.arange(500) % 7, "y": np.arange(500) % 25})  # 25 classes of 20 rows
    assert load_dataset(frame, target="y").num_classes == 25


def test_target_with_a_named_dataset_is_an_error_unless_its_own():
    with pytest.raises(DatasetError, match="target='age' was given with the named dataset 'pharyngitis'.*'radt'"):
        load_dataset("pharyngitis", target="age")
    assert load_dataset("Pharyngitis", target="radt").name == "pharyngitis"
    assert load_dataset("iris", description="Flowers.").description == "Flowers."


def test_openml_hint_names_the_openml_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openml", None)  # import openml raises ImportError
    with pytest.raises(
        DatasetError, match=r'pip install openml` \(in a checkout of etpo-gym: `pip install -e "\.\[openml\]"`'
    ):
        load_dataset("cmc")


def test_unknown_env_keyword_is_a_short_error_without_the_dataframe():
    import gymnasium as gym

    frame = _sorted_by_target()
    with pytest.raises(ValueError, match="unknown argument") as error:
        gym.make("ETPO-DataSciText-v0", dataset=frame, target="label", max_turn=3)
    message = str(error.value)
    assert "did you mean 'max_turns'?" in message and "rows x" not in message and len(message) < 600
