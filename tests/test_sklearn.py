"""jaxfw.sklearn: scikit-learn's own estimator checks, and the estimators in pipelines,
searches and cross-validation, with labels of any type, DataFrames and export."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxfw.artifact
from jaxfw.errors import UserError
from jaxfw.sklearn import JaxfwClassifier, JaxfwRegressor

# Small and quick: the checks fit a few hundred times on tiny data. A higher learning rate
# than the default so that 30 steps reach the checks' minimum scores.
SMALL = {"model": "mlp_small", "steps": 30, "learning_rate": 1e-2}


@parametrize_with_checks([JaxfwClassifier(**SMALL), JaxfwRegressor(**SMALL)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def test_defaults_reach_the_recipe_accuracy_on_held_out_rows(cancer):
    X_train, X_test, y_train, y_test = cancer
    clf = JaxfwClassifier().fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.93
    assert clf.history_[-1]["step"] == 300  # jaxfw's records, the last at the final step
    assert not hasattr(clf, "run_dir_")  # run_dir=None: nothing kept


def test_pipeline_grid_search_and_cross_validation(cancer):
    X_train, X_test, y_train, y_test = cancer
    pipe = make_pipeline(StandardScaler(), JaxfwClassifier(**SMALL))
    search = GridSearchCV(
        pipe, {"jaxfwclassifier__learning_rate": [1e-3, 1e-2]}, cv=2, n_jobs=1
    ).fit(X_train, y_train)
    assert search.best_params_["jaxfwclassifier__learning_rate"] in (1e-3, 1e-2)
    assert search.score(X_test, y_test) > 0.85
    scores = cross_val_score(JaxfwClassifier(**SMALL), X_train, y_train, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_clone_is_unfitted_and_random_state_fixes_the_fit(cancer):
    X_train, X_test, y_train, _ = cancer
    fitted = JaxfwClassifier(**SMALL).fit(X_train, y_train)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(X_test)
    again = copy.fit(X_train, y_train).predict_proba(X_test)
    # Same process, same machine, same program: bit-for-bit the same fit.
    np.testing.assert_array_equal(again, fitted.predict_proba(X_test))
    other = JaxfwClassifier(**SMALL, random_state=1).fit(X_train, y_train)
    assert not np.array_equal(other.predict_proba(X_test), again)
    proba = fitted.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert fitted.decision_function(X_test).shape == (len(X_test),)


def test_string_labels_and_dataframes_round_trip(cancer):
    X_train, X_test, y_train, y_test = cancer
    names = np.array(["malignant", "benign"])
    columns = [f"f{i}" for i in range(X_train.shape[1])]
    frame = pd.DataFrame(X_train, columns=columns)
    clf = JaxfwClassifier(**SMALL).fit(frame, names[y_train])
    assert list(clf.classes_) == ["benign", "malignant"]
    assert list(clf.feature_names_in_) == columns
    predicted = clf.predict(pd.DataFrame(X_test, columns=columns))
    assert set(predicted) <= {"benign", "malignant"}
    assert np.mean(predicted == names[y_test]) > 0.85


def test_multiclass_decision_function_and_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    y = np.repeat([3, 7, 9], 30)
    X[:, 0] += 2 * y  # separable by the first feature (class means 8 apart at least)
    clf = JaxfwClassifier(**{**SMALL, "steps": 200}).fit(X, y)
    assert clf.decision_function(X).shape == (90, 3)
    assert clf.score(X, y) > 0.9
    target = X @ np.array([1.0, -2.0, 0.5, 0.0]) * 10 + 100
    reg = JaxfwRegressor(**SMALL, overrides=["trainer.steps=200"]).fit(X, target)  # overrides win
    assert reg.score(X, target) > 0.9  # on the target's own scale (mean 100s)


def test_export_predicts_the_same_classes(cancer, tmp_path):
    X_train, X_test, y_train, _ = cancer
    names = np.array(["malignant", "benign"])
    clf = JaxfwClassifier(**SMALL).fit(X_train, names[y_train])
    with pytest.raises(NotFittedError):
        JaxfwClassifier().export(tmp_path / "unfitted")
    path = clf.export(tmp_path / "artifact", platforms=("cpu",))
    outputs = jaxfw.artifact.load(path).predict(X_test.astype(np.float32))
    # The artifact carries classes_ as its labels: the same strings predict() returns.
    assert list(jaxfw.artifact.load(path).class_labels) == ["benign", "malignant"]
    np.testing.assert_array_equal(outputs["predicted_label"].astype(str), clf.predict(X_test))
    np.testing.assert_array_equal(clf.classes_[outputs["predicted_class"]], clf.predict(X_test))


def test_kept_run_dir_exports_its_final_checkpoint(cancer, tmp_path):
    X_train, X_test, _, _ = cancer
    reg = JaxfwRegressor(**SMALL, run_dir=tmp_path / "run").fit(X_train[:, 1:], X_train[:, 0])
    assert (reg.run_dir_ / "config.yaml").exists()
    path = reg.export(tmp_path / "artifact", platforms=("cpu",))
    outputs = jaxfw.artifact.load(path).predict(X_test[:, 1:].astype(np.float32))
    np.testing.assert_allclose(outputs["prediction"], reg.predict(X_test[:, 1:]), rtol=1e-5)


def test_user_mistakes_are_one_sentence(cancer):
    X_train, _, y_train, _ = cancer
    with pytest.raises(UserError, match="Unknown recipe 'nope'"):
        JaxfwClassifier(recipe="nope").fit(X_train, y_train)
    with pytest.raises(UserError, match=r"trainer\.nope"):
        JaxfwClassifier(overrides=["trainer.nope=1"]).fit(X_train, y_train)
