"""Where raw examples come from: bundled and .npz arrays, text files, CSV/Parquet tables.

Modules here read and check what a user supplied; assembling split, fingerprinted bundles
from it is jaxfw.data.loading's job.
"""
