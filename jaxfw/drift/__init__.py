"""Data drift: how far a model's inputs have moved from its training data (the artifact's
reference.json, see `jaxfw.distributions`).

- `DriftMonitor` (monitor.py): a server's rolling window of raw inputs and its report.
- `compare.feature_result` / `dataset_result`: the per-feature statistics (PSI, KS,
  Jensen-Shannon, chi-square; stats.py, special.py) and the statuses, with the thresholds
  of thresholds.py; shared by the server and the offline `jaxfw-drift` (files.py reads
  CSV/Parquet, html.py writes drift.html).

The modules the server imports (monitor and everything it imports) use numpy and the
standard library only; files.py and html.py import pyarrow and matplotlib when called.
"""

from jaxfw.drift.monitor import DriftMonitor
from jaxfw.drift.thresholds import DEFAULT, DRIFT, NO_DATA, OK, WATCH, Thresholds

__all__ = ["DEFAULT", "DRIFT", "NO_DATA", "OK", "WATCH", "DriftMonitor", "Thresholds"]
