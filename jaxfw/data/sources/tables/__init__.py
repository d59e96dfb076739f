"""CSV/Parquet tables: locating and reading files, classifying and canonicalising columns,
and the train-fitted encoding (`TablePreprocessor`) a model's features come from."""
