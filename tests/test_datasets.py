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
