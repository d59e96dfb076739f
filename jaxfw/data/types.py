"""The containers a dataset travels in: raw source arrays, one `Split` per role, the
train-fitted `FeatureTransform`, one `DataBundle` per run. Imports no other jaxfw.data module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

SPLIT_NAMES = ("train", "val", "test")  # roles 0, 1, 2 wherever a role is an int


@dataclass(frozen=True, eq=False)
class RawData:
    """Source arrays exactly as stored, plus a phrase that names them in error messages."""

    inputs: np.ndarray
    targets: np.ndarray
    origin: str  # e.g. "data file 'x.npz'" or "the bundled digits dataset"
    feature_names: tuple[str, ...] = ()  # one per input feature, where the source names them

    @property
    def subject(self) -> str:
        """`origin` capitalised, to open a sentence."""
        return self.origin[:1].upper() + self.origin[1:]


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


class TrainSplit(Protocol):
    """What a bundle's train split offers: a `Split`, or a streamed one
    (`jaxfw.data.loading.streaming.StreamingSplit`) whose inputs/targets are a sample."""

    @property
    def inputs(self) -> np.ndarray: ...
    @property
    def targets(self) -> np.ndarray: ...
    def __len__(self) -> int: ...
    def class_counts(self, num_classes: int) -> list[int]: ...


class TablePreprocessing(Protocol):
    """What a bundle records of a table's fitted encoding
    (`jaxfw.data.sources.tables.preprocessor.TablePreprocessor`)."""

    target: str
    classes: tuple
    task_kind: str

    @property
    def num_features(self) -> int: ...
    def to_json(self) -> str: ...
    def transform(self, data: Any) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class FeatureTransform:
    """x -> (x * scale - mean) / std, per feature; mean/std are None when not standardizing.

    Kept on the DataBundle because an exported model sees raw features at serving time and
    must apply exactly the transform its training data went through. Fitted on the train
    split only: val/test statistics must not leak into training.
    """

    scale: float = 1.0
    mean: np.ndarray | None = None  # float64 [*input_shape], from the train split
    std: np.ndarray | None = None  # float64 [*input_shape], zeros replaced by 1

    @classmethod
    def fit(cls, train_inputs: np.ndarray, scale: float, standardize: bool) -> FeatureTransform:
        """Fit on the train split alone."""
        if not standardize:
            return cls(scale=scale)
        # float64 accumulation: float32 sums drift visibly on tens of thousands of rows.
        scaled = train_inputs.astype(np.float64) * scale
        mean = scaled.mean(axis=0)
        std = scaled.std(axis=0)
        # A constant feature carries no information; dividing by 1 leaves it at zero.
        std[std == 0] = 1.0
        return cls(scale=scale, mean=mean, std=std)

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        """Transform a float array [n, *input_shape]; returns float32."""
        out = inputs.astype(np.float64) * self.scale
        if self.mean is not None and self.std is not None:
            out = (out - self.mean) / self.std
        return out.astype(np.float32)


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A dataset split three ways, plus what a run directory must record about it."""

    name: str
    # A StreamingSplit with data.streaming=true: read row group by row group by train_iterator.
    train: TrainSplit
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
    preprocessor: TablePreprocessing | None = None
    # Tables: the data report computed from the raw columns at load (see quality.data_report).
    report: dict[str, Any] | None = None
    # Tables: the train split's raw per-column distributions, the drift baseline an export
    # carries (quality/reference.py); array and text sources derive theirs from the splits.
    reference: dict[str, Any] | None = None
    # The raw features' names where the source has them (a table's columns, scikit-learn's
    # feature_names): exported models accept rows keyed by them.
    feature_names: tuple[str, ...] = ()

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
