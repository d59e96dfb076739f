"""Data quality: per-split tallies, row hashes, the data report and its findings, and what
`data.validation` does with them."""
