"""Turn Hydra/OmegaConf composition errors into one-sentence UserErrors.

Hydra's own messages are multi-line and speak of its internals; a user wants the
bad value, where it was and what is allowed.
"""

import dataclasses
import difflib
from collections.abc import Iterator

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

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


def _did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, choices, n=1)
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


def translate_config_error(exc: BaseException) -> UserError:
    """The one-sentence UserError that explains a failed composition."""
    for cause in _causes(exc):
        if isinstance(cause, MissingConfigException):
            return _missing_option(cause)
        if isinstance(cause, OverrideParseException):
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
