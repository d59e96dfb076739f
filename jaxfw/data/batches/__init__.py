"""Batches: of in-memory splits (`memory`) and of streamed Parquet train splits
(`streaming`); `jaxfw.data.pipeline` picks one for a split."""
