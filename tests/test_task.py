import numpy as np
import pytest

from etpo_gym import task
from etpo_gym.datasets import load_dataset

RF = "from sklearn.ensemble import RandomForestClassifier\nmodel = RandomForestClassifier(n_estimators=20, random_state=0)\nmodel.fit(x_train, y_train)"


@pytest.mark.parametrize(
    "variant",
    [
        RF,
        RF + "\nreturn model",
        "\n".join("    " + line for line in RF.split("\n")) + "\n    return model\n",
        RF.split("\n")[0] + "\n" + "\n".join("    " + line for line in RF.split("\n")[1:]),  # prompt-continuation form
        RF.replace("\n", "\r\n") + "\n\n\n",
    ],
)
def test_normalize_body_accepts_indentation_variants(variant):
    assert task.normalize_body(variant) == RF


@pytest.mark.parametrize(
    "written, expected",
    [
        ("while True:\n        pass", "while True:\n    pass"),  # after the prompt's indent, block opener first
        ("for i in range(3):\n    model = i", "for i in range(3):\n    model = i"),  # no function indentation
        ("a = 1\n        b = 2", "a = 1\nb = 2"),  # over-indented body, consistent
    ],
)
def test_normalize_body_resolves_first_line_ambiguity(written, expected):
    assert task.normalize_body(written) == expected


def test_normalize_body_keeps_nested_return():
    body = "if True:\n    return model\nmodel = 1"
    assert task.normalize_body(body) == body


def test_prompt_shows_the_shape_build_model_receives():
    data = load_dataset("kidney_stone")
    prompt = task.build_prompt(data)
    assert f"in shape {data.train_shape}" in prompt
    assert prompt.startswith('"""Classification with a Kidney Stone Prediction Dataset"""')
    assert prompt.endswith('y_train."""\n    ')
    from sklearn.model_selection import train_test_split

    x_train, *_ = train_test_split(data.x, data.y, test_size=0.5, random_state=0)
    assert x_train.shape == data.train_shape


def test_rich_prompt_has_columns_description_and_balance():
    data = load_dataset("pharyngitis")
    prompt = task.build_prompt(data, "rich")
    assert "age_y (numeric)" in prompt and "Classes of y_train" in prompt and "streptococcus" in prompt
    with pytest.raises(ValueError, match="prompt style"):
        task.build_prompt(data, "fancy")


def test_reflection_prompt_contains_error_and_failed_code():
    data = load_dataset("iris")
    prompt = task.build_reflection_prompt(data, "model = Foo()", "NameError: name 'Foo' is not defined")
    assert "NameError: name 'Foo' is not defined" in prompt
    assert "    model = Foo()\n" in prompt and prompt.endswith("    ")


def test_program_source_compiles_and_returns_model():
    namespace: dict = {}
    exec(task.program_source(RF), namespace)
    data = load_dataset("iris")
    scores = task.score_build_model(namespace["build_model"], data.x, data.y, data.x_test, data.y_test, 3)
    assert len(scores["split_aucs"]) == task.NUM_SPLITS
    assert 0.9 < scores["auc"] <= 1.0 and scores["auc"] == pytest.approx(np.mean(scores["split_aucs"]))


def test_roc_auc_binary_and_multiclass_against_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    assert task.roc_auc(y, p, 3) == pytest.approx(roc_auc_score(y, p, multi_class="ovo"))
    y2 = rng.integers(0, 2, 60)
    p2 = rng.dirichlet(np.ones(2), 60)
    assert task.roc_auc(y2, p2, 2) == pytest.approx(roc_auc_score(y2, p2[:, 1]))
    with pytest.raises(ValueError, match="shape"):
        task.roc_auc(y2, p2[:, :1], 2)
    with pytest.raises(ValueError, match="NaN"):
        task.roc_auc(y2, np.full((60, 2), np.nan), 2)
