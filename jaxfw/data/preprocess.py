"""Feature scaling fitted on the training split only, kept so serving can replay it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class FeatureTransform:
    """x -> (x * scale - mean) / std, per feature; mean/std are None when not standardizing.

    Kept on the DataBundle because an exported model sees raw features at serving time and
    must apply exactly the transform its training data went through.
    """

    scale: float = 1.0
    mean: np.ndarray | None = None  # float64 [*input_shape], from the train split
    std: np.ndarray | None = None  # float64 [*input_shape], zeros replaced by 1

    @classmethod
    def fit(cls, train_inputs: np.ndarray, scale: float, standardize: bool) -> FeatureTransform:
        """Fit on the train split alone: val/test statistics must not leak into training."""
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
