"""Names of the metrics each task reports, and picking the configured ones.

The names are flat (no namespace) so a config can list them directly:
`task.metrics=[accuracy,f1_macro,roc_auc_ovr_macro]`. The tuples name what the
finalize functions and `ScoreAccumulator` return with default settings; the k of
`top{k}_accuracy` follows the `top_k` actually used (5 by default, at most C), and
binary tasks report `roc_auc` where multiclass ones report `roc_auc_ovr_*`.
"""

_AVERAGED = tuple(
    f"{name}_{average}"
    for name in ("precision", "recall", "f1")
    for average in ("macro", "micro", "weighted")
)

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "count",
    "accuracy",
    "top5_accuracy",
    "log_loss",
    "ece",
    *_AVERAGED,
    "precision_per_class",
    "recall_per_class",
    "f1_per_class",
    "support_per_class",
    "confusion_matrix",
    # From ScoreAccumulator (exact ranking metrics).
    "roc_auc",
    "roc_auc_ovr_macro",
    "roc_auc_ovr_weighted",
    "roc_auc_per_class",
    "average_precision",
    "average_precision_per_class",
)

REGRESSION_METRICS: tuple[str, ...] = ("count", "mse", "rmse", "mae", "r2")

LM_METRICS: tuple[str, ...] = (
    "token_count",
    "log_loss",
    "perplexity",
    "bits_per_byte",
    "accuracy",
)
