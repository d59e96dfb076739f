"""docs/configuration.md is the typed schema rendered: every key with its type, default,
choices and the comment that explains it; the page and the schema cannot drift apart."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from jaxfw.config import schema
from jaxfw.config.reference import _rows, field_comments, render_reference

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_page_is_the_schema_rendered():
    assert PAGE.read_text() == render_reference(), (
        "docs/configuration.md is out of date: run "
        "`python -m jaxfw.config.reference > docs/configuration.md`"
    )


def test_every_key_is_on_the_page_with_its_default_and_choices():
    page = PAGE.read_text()
    assert "| `trainer.steps` | int | `2000` |" in page
    assert "| `optimizer.name` | choice | `adam` | `sgd`, `adam`, `adamw` |" in page
    assert "| `data.path` | str or null | `null` |" in page
    assert "| `mesh.rules` | dict[str, any] |" in page
    for group in (
        "trainer",
        "optimizer",
        "schedule",
        "data",
        "task",
        "logger",
        "checkpoint",
        "mesh",
        "distributed",
        "fault",
    ):
        assert f"## `{group}`" in page
    # The comment that explains a key is the one in the schema's source.
    assert field_comments(schema.CheckpointConfig)["keep_last"] == "the newest checkpoints kept"


def test_a_key_without_a_comment_is_refused():
    @dataclass
    class Sloppy:
        documented: int = 1  # says what it is
        bare: int = 2

    with pytest.raises(ValueError, match=r"Sloppy\.bare has no comment"):
        _rows(Sloppy, "")
