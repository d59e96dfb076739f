"""`python -m jaxfw.train` runs the `jaxfw-train` command (jaxfw/cli/train.py).

The training function itself is `jaxfw.train(config)`; see jaxfw/trainer.py.
"""

from jaxfw.cli.train import main

if __name__ == "__main__":
    main()
