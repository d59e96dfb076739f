"""The user documentation stays true to the code: relative links in README.md and docs/
lead to files (and headings) that exist, the config keys the user pages name exist in the
composed config, and every `jaxfw-<command>` they name is an installed console script.

What counts as a config key (kept strict so that file names and Python attributes are not
mistaken for keys):

- in an inline code span outside fenced blocks, the *whole* span is `group.key` or
  `group.key=value`, where `group` is a section of the composed config (trainer,
  optimizer, data, mesh, ...; `hydra.` is not one) and each part after it is an
  identifier. A span whose last part is a file suffix (`model.jaxexport`) is a file name.
  So `trainer.steps`, `data.path=shop.csv` and `mesh.rules.embed=null` are checked;
  `jaxfw.artifact.load`, `export.platforms=[cpu]`, `run.json` and `model.predict(x)` are
  not;
- inside fenced code blocks, `group.key=` directly after a space, a quote or a line
  start, as in `jaxfw-train trainer.steps=500` or `compose(..., ["optimizer.lr=3e-3"])`;
  `cfg.trainer.eval_every = 100` (an attribute, not an override) is not.

A key exists when it is in the config composed from at least one recipe (model keys
differ between recipes: `model.attention` is the transformer's).
"""

import re
import tomllib
from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import jaxfw

REPO = Path(jaxfw.__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
# The user pages whose config keys are checked (configuration.md is generated from the
# schema and checked by tests/test_config_reference.py).
USER_PAGES = [
    DOCS / name
    for name in (
        "concepts.md",
        "models-and-data.md",
        "checkpoints.md",
        "scaling.md",
        "evaluation.md",
        "deploy.md",
    )
]
FILE_SUFFIXES = {
    "json", "jsonl", "yaml", "yml", "md", "html", "png", "csv", "parquet", "pq", "npz",
    "py", "txt", "log", "lock", "jaxexport", "safetensors",
}  # fmt: skip
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SPAN = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?<![\w./-])jaxfw-([a-z][a-z0-9]*)")


def _prose_and_code(text: str) -> tuple[list[str], list[str]]:
    """(lines outside fenced code blocks, lines inside them)."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks too) dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def _anchors(page: Path) -> frozenset[str]:
    prose, _ = _prose_and_code(page.read_text())
    seen: dict[str, int] = {}
    anchors = set()
    for line in prose:
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)


def _relative_links(page: Path) -> list[str]:
    prose, _ = _prose_and_code(page.read_text())
    links = [m.group(1) for line in prose for m in LINK.finditer(line)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_to_existing_files_and_headings(page):
    broken = []
    for link in _relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link} (no heading #{anchor} in {target.name})")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_the_user_pages_exist_and_link_each_other():
    for page in USER_PAGES:
        assert page.is_file(), f"{page.relative_to(REPO)} is missing"
        links = {link.partition("#")[0] for link in _relative_links(page)}
        assert links & {p.name for p in USER_PAGES} - {page.name}, (
            f"{page.name} links no other user page"
        )


@cache
def _configs() -> tuple[dict, ...]:
    """Every recipe's composed config, as plain containers (`???` kept as a string)."""
    recipes = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))
    return tuple(OmegaConf.to_container(jaxfw.compose(recipe), resolve=False) for recipe in recipes)


def _groups() -> list[str]:
    return sorted({k for cfg in _configs() for k, v in cfg.items() if isinstance(v, dict)})


def _config_keys(text: str, groups: list[str]) -> set[str]:
    """The config keys a page names (see the module docstring for what counts)."""
    group = "|".join(map(re.escape, groups))
    whole_span = re.compile(rf"^((?:{group})(?:\.[A-Za-z_]\w*)+)(?:=.*)?$")
    override = re.compile(rf"(?:^|(?<=[\s\"'\[(]))((?:{group})(?:\.[A-Za-z_]\w*)+)=")
    prose, code = _prose_and_code(text)
    keys = set()
    for line in prose:
        for span in SPAN.findall(line):
            match = whole_span.match(span.strip())
            if match and match.group(1).rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                keys.add(match.group(1))
    for line in code:
        keys.update(m.group(1) for m in override.finditer(line))
    return keys


def _exists(key: str, cfg: dict) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_the_key_pattern_is_strict():
    groups = ["data", "model", "trainer", "mesh"]
    text = (
        "Set `trainer.steps`, `data.path=shop.csv` or `mesh.rules.embed=null`; not\n"
        "`model.jaxexport`, `jaxfw.artifact.load`, `run.json`, `model.predict(x)`,\n"
        "`export.platforms=[cpu]` or `hydra.run.dir=/tmp/x`.\n"
        "```bash\n"
        "jaxfw-train data.target=label hydra.run.dir=/tmp/x\n"
        "```\n"
        "```python\n"
        'cfg = jaxfw.compose("digits_mlp", ["model.dropout=0.2"])\n'
        "cfg.trainer.eval_every = 100\n"
        "```\n"
    )
    assert _config_keys(text, groups) == {
        "trainer.steps",
        "data.path",
        "mesh.rules.embed",
        "data.target",
        "model.dropout",
    }


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: p.name)
def test_config_keys_named_in_the_user_pages_exist(page):
    groups = [g for g in _groups() if g != "hydra"]
    keys = _config_keys(page.read_text(), groups)
    unknown = sorted(k for k in keys if not any(_exists(k, cfg) for cfg in _configs()))
    assert not unknown, f"{page.name} names config keys that do not exist: {unknown}"


def test_named_commands_are_console_scripts():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    unknown = {
        f"{page.relative_to(REPO)}: jaxfw-{name}"
        for page in PAGES
        for name in COMMAND.findall(page.read_text())
        if f"jaxfw-{name}" not in scripts
    }
    assert not unknown, f"commands that are not console scripts: {sorted(unknown)}"


def test_the_readme_links_every_docs_page():
    """The README is the front page: a page it does not link is a page nobody finds."""
    readme = (REPO / "README.md").read_text()
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    missing = [name for name in pages if f"(docs/{name})" not in readme]
    assert pages and not missing, f"README.md does not link {missing}"
