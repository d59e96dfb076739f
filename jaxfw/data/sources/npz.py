"""Reading a user's NumPy `.npz` file into raw arrays, with one-sentence errors for mistakes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from jaxfw.data.types import RawData
from jaxfw.errors import UserError

REQUIRED_ARRAYS = ("inputs", "targets")


def read_npz(path: str | None) -> RawData:
    """Load arrays `inputs` [n, ...] and `targets` [n] from the .npz file at `path`."""
    if not path:
        raise UserError(
            "data.path is not set; source 'npz' needs the path of a .npz file "
            "with arrays 'inputs' and 'targets'."
        )
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"Data file '{path}' does not exist (data.path).")
    if not file.is_file():
        raise UserError(f"Data file '{path}' is not a regular file (data.path).")

    try:
        # allow_pickle=False: a data file must never be able to run code on load.
        loaded = np.load(file, allow_pickle=False)
    except ValueError as error:
        # np.load falls back to unpickling anything that is neither zip nor .npy, and with
        # allow_pickle=False that surfaces as a ValueError about pickles, which would mislead.
        raise UserError(
            f"Data file '{path}' is not a readable .npz archive (it is neither a zip archive "
            "nor a .npy file)."
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(
            f"Data file '{path}' is not a readable .npz archive ({_reason(error)})."
        ) from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UserError(
            f"Data file '{path}' holds a single .npy array, not a .npz archive with arrays "
            "'inputs' and 'targets' (save it with numpy.savez)."
        )

    with loaded:
        missing = [name for name in REQUIRED_ARRAYS if name not in loaded.files]
        if missing:
            found = ", ".join(repr(name) for name in loaded.files) or "no arrays"
            raise UserError(
                f"Data file '{path}' has no array named {missing[0]!r}; it contains {found}, "
                "and needs 'inputs' [n, ...] and 'targets' [n]."
            )
        try:
            # Members are read lazily, so a damaged archive or pickled member fails only here.
            inputs, targets = (loaded[name] for name in REQUIRED_ARRAYS)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(
                f"Data file '{path}' is not a readable .npz archive ({_reason(error)})."
            ) from error
    return RawData(inputs, targets, f"data file '{path}'")


def _reason(error: Exception) -> str:
    """The first sentence of numpy's own explanation, so it fits inside our one sentence."""
    first = str(error).strip().split(". ")[0].rstrip(".")
    return first or type(error).__name__
