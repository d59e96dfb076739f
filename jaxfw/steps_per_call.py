"""trainer.steps_per_execution=auto: how many optimizer steps each compiled call runs.

Every call costs the host a fixed amount of work: reading its batches, the loop's
bookkeeping and dispatching the compiled program (flattening the state, checking its
arguments). For a large model that is nothing next to the step; for a small one it is most
of the step, and on a CPU it runs on the same cores as XLA's compute threads. One call of
K steps (a `lax.scan`, jaxfw/steps.py) pays it once for K steps, and gives the same
parameters as K calls.

So the loop times its first calls after compilation (each one run to completion: the
host's work, then the device's) and takes the smallest K that brings the host's work
under HOST_SHARE of the device time of the steps it drives, among the lengths that end
exactly at every log/evaluation/checkpoint step (divisors of their intervals, at most
MAX_STEPS_PER_CALL) and within two limits: a call no longer than MAX_CALL_SECONDS
(SIGTERM, Ctrl-C and the progress bar are served between calls) and K stacked batches no
larger than MAX_STACKED_BYTES.
"""

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

MAX_STEPS_PER_CALL = 64
HOST_SHARE = 0.01  # the host's work per step, as a fraction of the step's device time
MAX_CALL_SECONDS = 0.25
MAX_STACKED_BYTES = 64 << 20
MEASURED_CALLS = 8  # single-step calls timed after the compiling one (medians taken)


def candidate_lengths(intervals: Iterable[int], limit: int = MAX_STEPS_PER_CALL) -> list[int]:
    """Call lengths that end exactly at every multiple of each interval (a log, evaluation
    or checkpoint step): the divisors of the intervals' greatest common divisor up to
    `limit`; the powers of two up to `limit` when there is no interval."""
    every = [int(i) for i in intervals if int(i) > 0]
    if not every:
        return [2**p for p in range(int(math.log2(limit)) + 1)]
    common = math.gcd(*every)
    return [k for k in range(1, min(common, limit) + 1) if common % k == 0]


@dataclass(frozen=True)
class Choice:
    """What auto chose and from what (recorded in run.json as `steps_per_execution`)."""

    steps_per_call: int
    host_us_per_call: float  # the host's work for one single-step call (median)
    device_us_per_step: float  # the rest of a single-step call's wall time (median)
    host_share_at_1: float  # host / device time with one step per call
    candidates: list[int]
    reason: str

    def as_dict(self) -> dict:
        return {"mode": "auto", **asdict(self)}


def choose_steps_per_call(
    host_s: float, total_s: float, batch_bytes: int, candidates: list[int]
) -> Choice:
    """K from one single-step call's host work (`host_s`) and wall time to its result
    (`total_s`, host work included)."""
    device_s = max(total_s - host_s, 0.0)
    share = host_s / device_s if device_s > 0 else math.inf
    allowed = [
        k
        for k in candidates
        if k == 1 or (k * total_s <= MAX_CALL_SECONDS and k * batch_bytes <= MAX_STACKED_BYTES)
    ]
    hiding = [k for k in allowed if share / k <= HOST_SHARE]
    if hiding:
        k = hiding[0]
        reason = (
            "the host's work is hidden with one step per call"
            if k == 1
            else f"{k} steps per call bring the host's work under {HOST_SHARE:.0%} of the step"
        )
    else:
        k = max(allowed)
        limits = "call length, stacked batch size and log/eval/save intervals"
        reason = f"the most steps per call the {limits} allow"
    return Choice(
        k, round(host_s * 1e6, 1), round(device_s * 1e6, 1), round(share, 4), candidates, reason
    )


class StepsPerCallTuner:
    """Collects the timed calls and makes the choice once enough were seen."""

    def __init__(self, intervals: Iterable[int]) -> None:
        self.candidates = candidate_lengths(intervals)
        self._host: list[float] = []
        self._total: list[float] = []

    def record(self, host_s: float, total_s: float, batch_bytes: int) -> Choice | None:
        """One timed single-step call; the choice once MEASURED_CALLS were recorded."""
        self._host.append(host_s)
        self._total.append(total_s)
        if len(self._host) < MEASURED_CALLS:
            return None
        median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
        return choose_steps_per_call(
            median(self._host), median(self._total), batch_bytes, self.candidates
        )
