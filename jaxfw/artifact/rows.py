"""Raw rows in the forms users hold them -> {column: list of values}, without pyarrow or
pandas imported: a list of dicts (JSON records), a dict of columns (lists, arrays or one
scalar each), a pyarrow Table/RecordBatch (`to_pydict`) or a pandas DataFrame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxfw.artifact.errors import ArtifactError

_SCALARS = (str, bytes, int, float, bool, np.generic)


def as_columns(rows: Any) -> tuple[dict[str, Any], int]:
    """({column: values}, row count) of `rows`; an ArtifactError for anything else."""
    if hasattr(rows, "to_pydict"):  # pyarrow Table / RecordBatch
        rows = rows.to_pydict()
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas DataFrame
        rows = rows.to_dict("list")
    if isinstance(rows, Mapping):
        columns = {}
        for name, values in rows.items():
            if values is None or isinstance(values, _SCALARS):
                values = [values]  # one example given as {column: value}
            columns[str(name)] = values
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {len(v)}" for n, v in columns.items())
            raise ArtifactError(f"The columns have different lengths ({sizes}).")
        return columns, lengths.pop() if lengths else 0
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        names: dict[str, None] = {}
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ArtifactError(
                    f"Row {index + 1} is a {type(row).__name__}; rows are mappings of "
                    "column name to value."
                )
            names.update(dict.fromkeys(map(str, row)))
        columns = {name: [row.get(name) for row in rows] for name in names}
        return columns, len(rows)
    raise ArtifactError(
        f"Rows given as a {type(rows).__name__}; give a list of dicts, a dict of columns, a "
        "pyarrow Table or a pandas DataFrame."
    )
