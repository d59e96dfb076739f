"""Hooks: everything the training loop does between its compiled calls.

The loop (jaxfw/loop.py) only runs the compiled calls; at the steps a hook declares it
calls that hook. Built in, in the order they run at a step:

    faults.NanInjection      fault.nan_at_step: NaN inputs for that step (before its call)
    checksums.BatchChecksums trainer.log_batch_checksums: a CRC32 of every batch
    log.LogHook              every trainer.log_every: metrics, throughput, MFU, memory
    profiling.ProfileHook    trainer.profile_steps: a jax.profiler trace
    nan_policy.NanPolicy     trainer.nan_policy, whenever the pending metrics are fetched
    evaluation.EvalHook      every trainer.eval_every: validation metrics, the best so far
    (your hooks)             jaxfw.train(cfg, hooks=[...])
    preemption.PreemptionHook  SIGTERM: save and stop
    checkpointing.CheckpointHook  checkpoint.every_steps / every_seconds / new best / end
    faults.KillDuringSave    fault.kill_during_save_at_step

A hook of your own:

    class ParamNorm(jaxfw.Hook):
        def after_call(self, ctx):
            ctx.write({"custom/param_norm": float(optax.tree.norm(ctx.state.params))})

    jaxfw.train(cfg, hooks=[ParamNorm(every=200)])
"""

from jaxfw.hooks.base import NEVER, Hook, Hooks
from jaxfw.hooks.context import Context, PendingMetrics

__all__ = ["NEVER", "Context", "Hook", "Hooks", "PendingMetrics"]
