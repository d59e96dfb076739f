"""The containers a loaded dataset travels in: one `Split` per role, one `DataBundle` per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxfw.data.preprocess import FeatureTransform

if TYPE_CHECKING:
    from jaxfw.data.streaming import StreamingSplit
    from jaxfw.data.table_prep import TablePreprocessor

SPLIT_NAMES = ("train", "val", "test")


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of `array`, so data fingerprinted at load time cannot drift later.

    A view rather than a flag flip on `array` itself, which would surprise a caller who
    built the Split from an array it still wants to write to.
    """
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


# eq=False: the generated __eq__/__hash__ would compare numpy arrays elementwise (ambiguous
# truth value) and fail to hash them; identity semantics are the honest choice for arrays.
@dataclass(frozen=True, eq=False)
class Split:
    """One role of a dataset (train, val or test): inputs and targets, row by row."""

    # float32 [n, *input_shape] features; int32 [n, seq_len] tokens for language modelling
    inputs: np.ndarray
    # int32 [n] class labels; float32 [n] for regression; int32 [n, seq_len] next tokens (lm)
    targets: np.ndarray

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise ValueError(
                f"Split has {len(self.inputs)} inputs but {len(self.targets)} targets."
            )
        object.__setattr__(self, "inputs", _frozen(self.inputs))
        object.__setattr__(self, "targets", _frozen(self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    def class_counts(self, num_classes: int) -> list[int]:
        """Examples per class, as plain ints (JSON-ready); classification splits only."""
        return [int(c) for c in np.bincount(self.targets, minlength=num_classes)]


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A dataset split three ways, plus what a run directory must record about it."""

    name: str
    # A StreamingSplit with data.streaming=true: read row group by row group by train_iterator.
    train: Split | StreamingSplit
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    # sha256 of the source arrays and the preprocessing config; written into run.json and
    # checkpoints so a resumed or evaluated run can prove it sees the same data.
    fingerprint: str
    # What was done to the features (scale, train mean/std); export/serve replay it on raw input.
    transform: FeatureTransform = field(default_factory=FeatureTransform)
    # "classification" (int32 labels, num_classes >= 2), "regression" (float32 targets,
    # num_classes 0) or "lm" (int32 token windows, num_classes 256 for bytes).
    task_kind: str = "classification"
    # Tables: the fitted column encoding; the trainer saves `preprocessor.to_json()` as
    # preprocessing.json, and evaluation/inference re-apply it with `transform(columns)`.
    preprocessor: TablePreprocessor | None = None
    # Tables: the data report computed from the raw columns at load (see report.data_report).
    report: dict[str, Any] | None = None

    def example_batch(self, size: int) -> dict[str, np.ndarray]:
        """The first `size` train examples, for shapes (model init); works when streaming."""
        return {"inputs": self.train.inputs[:size], "targets": self.train.targets[:size]}

    def summary(self) -> dict:
        """A JSON-serialisable description: split sizes, class balance, shape, fingerprint."""
        out = {
            "name": self.name,
            "task_kind": self.task_kind,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "fingerprint": self.fingerprint,
            "scale": self.transform.scale,
            "standardized": self.transform.mean is not None or self.preprocessor is not None,
            "sizes": {role: len(getattr(self, role)) for role in SPLIT_NAMES},
        }
        if self.task_kind == "classification":
            out["class_counts"] = {
                role: getattr(self, role).class_counts(self.num_classes) for role in SPLIT_NAMES
            }
        if self.preprocessor is not None:
            out["target"] = self.preprocessor.target
            out["classes"] = list(self.preprocessor.classes)
            out["num_features"] = self.preprocessor.num_features
        return out
