"""jaxfw.xla_flags: the XLA:CPU flags are added to XLA_FLAGS without overriding the user's."""

import subprocess
import sys

from jaxfw.xla_flags import CPU_FLAGS, merged_flags


def test_merged_flags_adds_missing_and_keeps_the_users():
    name = next(iter(CPU_FLAGS))
    assert merged_flags("") == " ".join(f"{k}={v}" for k, v in CPU_FLAGS.items())
    mine = f"--xla_force_host_platform_device_count=8 {name}=CPU_SCHEDULER_TYPE_DEFAULT"
    assert merged_flags(mine) == mine  # the user's own value wins


def test_configure_before_and_after_jax_starts():
    code = (
        "import os, jax\n"
        "from jaxfw import xla_flags\n"
        "assert xla_flags.configure(), 'before any computation'\n"
        "assert '--xla_cpu_scheduler_type=' in os.environ['XLA_FLAGS']\n"
        "jax.numpy.ones(2).block_until_ready()\n"
        "assert xla_flags.backend_started()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
