"""The one exception type for mistakes a user can fix (bad override, missing file, ...).

Entry points catch it and print its message as a single line with a non-zero exit,
without a traceback; anything else is a bug in jaxfw and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's config, data or command line; the message says how to fix it."""
