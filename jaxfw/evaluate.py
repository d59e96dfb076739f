"""Evaluation over a whole split: padded batches, masked sums, one host fetch."""

from collections.abc import Callable

import jax

from jaxfw.data import Split, eval_batches
from jaxfw.state import TrainState
from jaxfw.tasks import finalize_metrics


def evaluate(
    eval_step: Callable,
    state: TrainState,
    split: Split,
    batch_size: int,
    put_batch: Callable[[dict], dict],
    prefix: str,
) -> dict[str, float]:
    """Namespaced means over every example of `split`, e.g. {"eval/accuracy": 0.97}."""
    # The last batch is padded and masked: nothing dropped, one compiled shape.
    totals = None
    for batch in eval_batches(split, batch_size):
        sums = eval_step(state, put_batch(batch))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    means = finalize_metrics(jax.device_get(totals))
    return {f"{prefix}/{name}": value for name, value in means.items()}
