"""The scikit-learn estimators: JaxfwClassifier (labels of any type) and JaxfwRegressor."""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxfw.sklearn.base import JaxfwEstimator


class JaxfwClassifier(ClassifierMixin, JaxfwEstimator):
    """A jaxfw recipe as a scikit-learn classifier (labels of any type).

    Parameters
    ----------
    recipe : a jaxfw recipe name (recipes/*.yaml), e.g. "breast_cancer", "digits_mlp".
    model : None (the recipe's model), a model config name ("mlp_small", "mlp", ...) or a
        Flax Linen / NNX module instance (not changed by fit).
    steps, batch_size, learning_rate : trainer.steps, trainer.batch_size (for fewer rows
        than that: the largest power of two <= the rows), optimizer.lr.
    random_state : int, None or numpy RandomState -> jaxfw's seed (see jaxfw.sklearn).
    overrides : more Hydra overrides ("optimizer=sgd", "trainer.eval_every=50"), applied last.
    run_dir : None: nothing of the run is written (logger and checkpoints off); a path: the
        full jaxfw run directory is kept there (`run_dir_`); it must be new or empty, since
        a refit never continues an earlier run (so leave it None in searches). Either way
        jaxfw's XLA compilation cache (trainer.compile_cache: a per-user cache directory)
        is used, which makes a refit of the same shapes cost ~0.3-0.7 s instead of ~2 s;
        overrides=["trainer.compile_cache=off"] turns it off.
    verbose : show jaxfw's progress (off by default).

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (DataFrame input), history_ (jaxfw's
    logged records; eval/* and test/* are training-set numbers), config_ (the resolved
    config), run_dir_ (with run_dir).
    """

    _task = "classification"

    def _adapt(self, cfg: DictConfig) -> DictConfig:
        """A recipe's ROC AUC for the number of classes this y has: jaxfw names the binary
        metric roc_auc and the multiclass ones roc_auc_ovr_*, and refuses the other kind
        (breast_cancer's task.metrics name roc_auc; y may have any number of classes)."""
        binary = len(self.classes_) == 2
        swap = {"roc_auc_ovr_macro": "roc_auc", "roc_auc_ovr_weighted": "roc_auc"}
        if not binary:
            swap = {"roc_auc": "roc_auc_ovr_macro"}
        metrics = list(dict.fromkeys(swap.get(m, m) for m in cfg.task.metrics))
        cfg.task.metrics = metrics
        prefix, _, name = str(cfg.task.best_metric).partition("/")
        if name in swap:
            cfg.task.best_metric = f"{prefix}/{swap[name]}"
        return cfg

    def fit(self, X: Any, y: Any) -> JaxfwClassifier:
        X, y = validate_data(self, X, y, dtype="numeric")
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "Classifier can't train when only one class is present: y holds only "
                f"{self.classes_[0]!r}."
            )
        self._fit_arrays(X, encoded.astype(np.int32))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits, float64: [n, C]; for two classes the 1-D score of `classes_[1]`
        (logit 1 - logit 0, the log-odds predict_proba turns into probabilities)."""
        logits = self._outputs(X)["logits"].astype(np.float64)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the logits, computed in float64 so that rows sum to 1 and the ranks
        agree with decision_function (float32 would tie saturated probabilities)."""
        logits = self._outputs(X)["logits"].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The labels of the program's `predicted_class` (the first maximal logit), the
        same index an exported artifact predicts."""
        check_is_fitted(self)  # before classes_ is read: NotFittedError, not AttributeError
        return self.classes_[self._outputs(X)["predicted_class"]]


class JaxfwRegressor(RegressorMixin, JaxfwEstimator):
    """A jaxfw recipe as a scikit-learn regressor (`task=regression`: mean squared error on
    standardised targets; predictions on the target's own scale). Parameters and
    attributes as JaxfwClassifier's, without classes_."""

    _task = "regression"

    def fit(self, X: Any, y: Any) -> JaxfwRegressor:
        X, y = validate_data(self, X, y, dtype="numeric", y_numeric=True)
        self._fit_arrays(X, y.astype(np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        # The program returns standardised values (its target_mean/std left at 0/1 so one
        # compiled program serves every fit); each fit's own scale is applied here.
        check_is_fitted(self)
        mean, std = self._target_scale
        return self._outputs(X)["prediction"].astype(np.float64) * std + mean
