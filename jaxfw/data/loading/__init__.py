"""Assembling a DataBundle per source: read, split, fit on train, encode, fingerprint, report.
`jaxfw.data.load.load_dataset` picks the loader."""
