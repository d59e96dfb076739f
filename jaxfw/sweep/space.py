"""The search space from Hydra's override grammar: `interval(a,b)` a float range
(`tag(log,interval(a,b))` on a log scale), `range(a,b[,step])` integers (b excluded),
`choice(x,y)` or `x,y` a categorical; any other override is fixed for every trial."""

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from jaxfw.errors import UserError

_PRIMITIVE = (type(None), bool, int, float, str)


@dataclass
class Param:
    key: str
    distribution: Any  # optuna.distributions.BaseDistribution
    strings: dict[Any, str] | None = None  # a categorical's values as override text

    def override(self, value: Any) -> str:
        text = self.strings[value] if self.strings is not None else repr(value)
        return f"{self.key}={text}"

    def first(self) -> str:
        """An override with a value from the range, to check that the config accepts it."""
        dist = self.distribution
        return self.override(dist.choices[0] if self.strings is not None else dist.low)


@dataclass
class Space:
    fixed: list[str]  # overrides every trial gets
    params: dict[str, Param]

    def check_jobs(self) -> list[list[str]]:
        """Override lists that cover the space's kinds of value: the first of each range,
        and every choice of each categorical."""
        base = [*self.fixed, *(p.first() for p in self.params.values())]
        jobs = [base]
        for key, param in self.params.items():
            if param.strings is None:
                continue
            others = [o for o in base if o.split("=", 1)[0] != key]
            jobs += [[*others, param.override(v)] for v in param.distribution.choices[1:]]
        return jobs


def _param(override: Override) -> Param:
    # Optuna loads only for its sweeper (an optional dependency).
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, sweep = override.get_key_element(), override.value()
    text = override.input_line or key
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, IntervalSweep):
        low, high = float(sweep.start), float(sweep.end)
        if not low < high:
            raise UserError(f"{text}: the interval's start must be below its end.")
        if log and low <= 0:
            raise UserError(f"{text}: a log-scale interval must start above 0.")
        return Param(key, FloatDistribution(low, high, log=log))
    if isinstance(sweep, RangeSweep) and all(
        isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)
    ):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step <= 0 or start >= stop:
            raise UserError(f"{text}: the range is empty (range(start,stop,step) excludes stop).")
        if log and (step != 1 or start <= 0):
            raise UserError(f"{text}: a log-scale range must start above 0 with step 1.")
        high = start + step * ((stop - 1 - start) // step)
        return Param(key, IntDistribution(start, high, log=log, step=step))
    if isinstance(sweep, ChoiceSweep | RangeSweep):
        if getattr(sweep, "shuffle", False):
            raise UserError(f"{text}: shuffle means nothing to the Optuna sweeper; drop it.")
        values = list(override.sweep_iterator())
        strings = list(override.sweep_string_iterator())
        if not all(isinstance(v, _PRIMITIVE) for v in values):
            values = strings  # lists or dicts: Optuna's categoricals hold plain values
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"{text}: a value is listed twice.")
        return Param(key, CategoricalDistribution(values), dict(zip(values, strings, strict=True)))
    raise UserError(f"{text}: the Optuna sweeper takes interval(), range() or choice() here.")


def search_space(overrides: list[Override]) -> Space:
    """The space of the parsed `overrides`; UserError for a range it cannot search."""
    fixed: list[str] = []
    params: dict[str, Param] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            params[key] = _param(override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return Space(fixed, params)
