"""`python -m jaxfw ...` runs the `jaxfw-train` command (jaxfw/cli/train.py).

There is no module named `jaxfw.train`: that name is the training function,
`jaxfw.train(config)` (jaxfw/trainer.py), and a module of the same name would replace it
on `import jaxfw.train`.
"""

from jaxfw.cli.train import main

if __name__ == "__main__":
    main()
