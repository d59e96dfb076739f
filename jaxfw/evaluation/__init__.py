"""Evaluation: `split` scores a model state on a whole split (padded batches, masked
statistics, exact scores for ranking metrics); `run` scores a run's checkpoint on a
split and writes its report (`report/` at the end of training, `eval/<split>-<checkpoint>/`
for `jaxfw-eval`)."""
