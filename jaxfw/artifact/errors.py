"""The artifact's one error: a file changed, missing or unreadable, an input that does not
fit the signature, a JAX outside the export's compatibility window. One sentence, naming
the file or value; `jaxfw-export`, `jaxfw-registry` and the server print it as is."""

from jaxfw.errors import UserError


class ArtifactError(UserError):
    """An artifact that cannot be used as it is, or an input it cannot take."""
