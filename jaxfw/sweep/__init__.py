"""Hyperparameter search: `jaxfw-train -m hydra/sweeper=optuna ...` (TPE on Optuna).

optuna_sweeper.py  the Hydra sweeper: one trial = one job through Hydra's launcher
space.py           Hydra sweep overrides (interval, range, choice) -> Optuna distributions
trial.py           the trial whose job runs now (set by the sweeper, read by the hook)
pruning.py         the hook reporting each evaluation to that trial, stopping pruned runs
"""
