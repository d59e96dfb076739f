"""`jaxfw-export`: a trained run's checkpoint -> a deployable artifact directory (the
format is `jaxfw.artifact.layout`; loading it is `jaxfw.artifact.load`)."""

from jaxfw.export.run import export_run

__all__ = ["export_run"]
