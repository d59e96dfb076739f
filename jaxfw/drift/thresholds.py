"""The drift thresholds, in one place: every status the statistics, the monitor, the
offline report and the server give is decided by these numbers, and each report lists them.

PSI (population stability index) 0.1 / 0.25 are the usual "watch" / "act" levels of credit
scoring, where PSI comes from. A KS p-value or a Jensen-Shannon distance alone never makes a
feature drifted: with thousands of rows both flag differences too small to matter, so
they only confirm a PSI that is at least at the watch level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OK, WATCH, DRIFT, NO_DATA = "ok", "watch", "drift", "no_data"
STATUSES = (OK, WATCH, DRIFT, NO_DATA)


@dataclass(frozen=True)
class Thresholds:
    psi_watch: float = 0.1  # PSI at or above: "watch"
    psi_drift: float = 0.25  # PSI at or above: "drift" whatever the tests say
    ks_pvalue: float = 0.05  # numeric: KS p below this and PSI >= psi_watch: "drift"
    js_distance: float = 0.1  # categorical: JS distance at or above this and PSI >= psi_watch
    dataset_share: float = 0.5  # the dataset drifts when this share of features drift
    share_floor: float = 1e-4  # PSI: an empty bin's share, on both sides (log of 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = Thresholds()
