"""scikit-learn estimators over `jaxfw.train`: `JaxfwClassifier` and `JaxfwRegressor`.

    clf = JaxfwClassifier(recipe="breast_cancer", steps=300).fit(X, y)
    clf.predict(X_test); clf.predict_proba(X_test); clf.history_
    make_pipeline(StandardScaler(), JaxfwClassifier()); GridSearchCV(...); cross_val_score(...)
    clf.export("artifact/")  # -> jaxfw.artifact.load("artifact/").predict(X)

`fit` composes the recipe with the estimator's parameters as Hydra overrides and calls
`jaxfw.train(cfg, model=..., data=...)`: the training itself is jaxfw's, unchanged. It
trains on *all* of X: the data is passed as `{"train": (X, y), "val": (X, y), "test": (X, y)}`
so jaxfw holds nothing out, and the eval/* and test/* numbers in `history_` are therefore
training-set numbers; use `cross_val_score` (or a split of your own) for held-out ones.

Predictions replay what jaxfw applied in training: the data bundle's FeatureTransform
(scale, and the mean/std fitted on the training rows) and the model's apply in inference
mode through `jaxfw.export.program.predict_function`, jitted once per model configuration
and run on padded batches of `trainer.eval_batch_size` rows, as jaxfw's evaluation does.

`random_state` -> jaxfw's one `seed` (initialisation, batch order, dropout): an int in
[0, 2**31 - 1] is the seed itself (random_state=3 is `seed=3`); None or a numpy RandomState
draw a seed from that generator (None: numpy's global one), as scikit-learn estimators do.
A fixed int repeats the fit exactly (same machine and versions).

Classification labels may be of any type: `classes_` (np.unique of y) maps them to the
indices 0..C-1 jaxfw trains on. For fewer rows than `batch_size`, the largest power of two
<= the rows is the batch (jaxfw needs batch_size <= the training rows; a few sizes share
compiled steps). A recipe's binary `roc_auc` metric becomes `roc_auc_ovr_macro` for more
than two classes (and back), since jaxfw accepts only the kind that fits the data.
"""

from jaxfw.sklearn.estimators import JaxfwClassifier, JaxfwRegressor

__all__ = ["JaxfwClassifier", "JaxfwRegressor"]
