"""`hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml): Hydra instantiates sweepers
only from its plugin namespace package, `hydra_plugins`; the sweeper itself is
jaxfw/sweep/optuna_sweeper.py."""

from jaxfw.sweep.optuna_sweeper import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    """jaxfw.sweep.optuna_sweeper.OptunaSweeper under the name Hydra accepts."""
