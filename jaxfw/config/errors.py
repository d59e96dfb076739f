"""Turn Hydra/OmegaConf composition errors into one-sentence UserErrors.

Hydra's own messages are multi-line and speak of its internals; a user wants the
bad value, where it was and what is allowed.
"""

import dataclasses
import difflib
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from jaxfw.config.schema import Config
from jaxfw.errors import UserError

_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _plain_letters(word: str) -> str:
    """`word` without accents ('stëps' -> 'steps'), for matching a key typed with them."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(_plain_letters(word), choices, n=1)
    if not close:
        return ""
    return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"


def _unknown_key(err: ConfigKeyError | ConfigAttributeError) -> UserError:
    full_key = str(err.full_key)
    parent, _, key = full_key.rpartition(".")
    owner = err.object_type
    if owner is not None and dataclasses.is_dataclass(owner):
        valid = [f.name for f in dataclasses.fields(owner)]
        where = f"under '{parent}'" if parent else "at the top level"
        return UserError(
            f"Unknown config key '{full_key}'{_did_you_mean(key, valid, parent)}; "
            f"valid keys {where}: {', '.join(valid)}."
        )
    return UserError(
        f"Unknown config key '{full_key}'; to add a new key (e.g. a model constructor "
        f"argument) write it as +{full_key}=<value>."
    )


def _bad_value(err: ValidationError) -> UserError:
    message = _first_line(str(err.msg))
    full_key = err.full_key
    if "could not be converted to" in message:
        value = message.split("'")[1] if "'" in message else message
        wanted = message.rsplit(" ", 1)[-1]
        return UserError(
            f"Invalid value '{value}' for '{full_key}': expected {_TYPE_WORDS.get(wanted, wanted)}."
        )
    if "expected one of" in message:
        value = message.split("'")[1]
        choices = message.split("[", 1)[1].rstrip("]")
        return UserError(f"Invalid value '{value}' for '{full_key}'; valid choices: {choices}.")
    return UserError(f"Invalid value for '{full_key}': {message}.")


def _missing_option(err: MissingConfigException) -> UserError:
    missing = err.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    options = sorted(err.options or [])
    if group and options:
        return UserError(
            f"Unknown {group} '{option}'{_did_you_mean(option, options)}; valid choices for "
            f"{group}: {', '.join(options)}."
        )
    return UserError(_first_line(str(err)).replace("In 'config': ", "") + ".")


def _schema_fields(key: str) -> tuple[str, str, list[str]] | None:
    """(parent key, the part of `key` that is not a field, the valid fields of the parent)
    for a key of the typed schema, or None when it lies under a free-form node (model,
    mesh.rules) or is a valid key."""
    node: Any = Config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return None
        if depth == 0 and part == "hydra":
            return None
        fields = {f.name: f.type for f in dataclasses.fields(node)}
        if part not in fields:
            return ".".join(parts[:depth]), part, list(fields)
        node = fields[part]
    return None


# Characters Hydra reads in an unquoted value (besides letters and digits); a value made of
# these plus non-ASCII letters means the same thing once quoted.
_PLAIN_VALUE_CHARS = set("_-+./\\%*@?|:~")


def quoted_override(override: str) -> str | None:
    """`key='value'` for an override `key=value` whose value is a plain word with non-ASCII
    letters (name=café), which Hydra reads only when quoted; None for any other override."""
    key, sep, value = override.partition("=")
    plain = all(c.isalnum() or c in _PLAIN_VALUE_CHARS for c in value)
    if not sep or not key.isascii() or value.isascii() or not plain:
        return None
    return f"{key}='{value}'"


def _quoted_piece(value: str) -> str:
    """The first comma-separated piece of `value` with a non-ASCII character, quoted."""
    piece = next(p for p in re.split(r"[,\[\]{}()]", value) if not p.isascii()).strip()
    return "'" + piece.replace("'", "\\'") + "'"


def parse_failure(exc: BaseException) -> str | None:
    """The override Hydra could not parse, if that is what `exc` is about."""
    for cause in _causes(exc):
        if isinstance(cause, OverrideParseException):
            return cause.override
    return None


def _non_ascii_override(override: str) -> UserError | None:
    """Hydra's override grammar has no room for a non-ASCII character outside quotes: explain
    what that means for this override rather than report a grammar error."""
    raw_key, sep, value = override.partition("=")
    key = raw_key.lstrip("+~")
    if not key.isascii():
        found = _schema_fields(key)
        if found is None:
            return UserError(
                f"Unknown config key '{key}': config keys are ASCII letters, digits, '_' and "
                "'-' only."
            )
        parent, word, valid = found
        choices = valid if parent else [*valid, "recipe", "debug"]  # groups of config.yaml
        where = f"under '{parent}'" if parent else "at the top level"
        return UserError(
            f"Unknown config key '{key}'{_did_you_mean(word, choices, parent)}; valid keys "
            f"{where}: {', '.join(valid)}."
        )
    if sep and not value.isascii():
        char = next(c for c in value if not c.isascii())
        quoted = quoted_override(override)
        fix = (
            f'write {quoted} (in a shell: "{quoted}")'
            if quoted
            else f"put each value that holds it in single quotes, e.g. {_quoted_piece(value)}"
        )
        return UserError(
            f"The value of '{override}' holds the non-ASCII character '{char}', which Hydra reads "
            f"only inside quotes: {fix}."
        )
    return None


def translate_config_error(exc: BaseException) -> UserError:
    """The one-sentence UserError that explains a failed composition."""
    for cause in _causes(exc):
        if isinstance(cause, MissingConfigException):
            return _missing_option(cause)
        if isinstance(cause, OverrideParseException):
            non_ascii = _non_ascii_override(cause.override)
            if non_ascii is not None:
                return non_ascii
            # Hydra's own text is the grammar's lexer state (e.g. "LexerNoViableAltException:
            # 3: ^"): naming the override and the two forms says more.
            return UserError(
                f"Cannot read the override '{cause.override}': write key=value (e.g. "
                "trainer.steps=500) or group=option (e.g. model=cnn), one per argument."
            )
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
            return _unknown_key(cause)
        if isinstance(cause, ValidationError) and cause.full_key:
            return _bad_value(cause)
    message = _first_line(str(exc))
    if message.startswith("Ambiguous value for argument"):
        override = message.split("'")[1]
        return UserError(
            f"'{override}' gives several values; add -m (multirun) to sweep over them, "
            "or give one value."
        )
    for cause in _causes(exc):
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            return UserError(
                f"Invalid config at '{cause.full_key}': {_first_line(str(cause.msg))}."
            )
    return UserError(f"Invalid config: {message}")
