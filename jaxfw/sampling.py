"""The bounds of a sampling request, checked before JAX loads (by `jaxfw-generate`) and
again by `jaxfw.generate.stream` for Python callers."""

import math

from jaxfw.errors import UserError

# A bound, so that a typo cannot start hours of sampling (lm_tiny samples a few hundred
# bytes a second on a 2-core CPU: a million bytes is most of an hour).
MAX_NEW_TOKENS = 1_000_000


def check_sampling(max_new_tokens: int, temperature: float) -> None:
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(
            f"--max-new-tokens={max_new_tokens} is not allowed; use a count from 1 to "
            f"{MAX_NEW_TOKENS:,}."
        )
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(
            f"--temperature={temperature} is not allowed; use a finite number >= 0 "
            "(0 decodes greedily)."
        )
