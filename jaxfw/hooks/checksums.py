"""trainer.log_batch_checksums: a CRC32 of every batch trained on (batch_checksums.jsonl),
to verify that a resumed run reads the same batches."""

from typing import Any

from jaxfw.hooks.base import Hook


class BatchChecksums(Hook):
    boundary = False

    def next_before(self, step: int, last: int) -> int:
        return step + 1  # every call

    def before_call(self, ctx: Any) -> None:
        for offset, host in enumerate(ctx.hosts):
            ctx.outputs.log_batch(ctx.first + offset, host)
