"""card.json and MODEL_CARD.md: what a model is, how well it did, where it came from.

card.json is the machine-readable record the registry reads (metrics, lineage, versions);
MODEL_CARD.md says the same for a person.
"""

from __future__ import annotations

import json
from typing import Any


def model_card_text(card: dict[str, Any], signature: dict[str, Any]) -> str:
    git = card.get("git") or {}
    commit = git.get("commit") or "unknown"
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    lines = [
        f"# Model card: {card['run_name']}",
        "",
        f"A {card['task']} model exported by jaxfw {card['jaxfw_version']} from run "
        f"`{card['run_id']}` (checkpoint {card['checkpoint']['kind']}, step "
        f"{card['checkpoint']['step']}).",
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {value:.6g} |" for name, value in card["metrics"].items()),
        "",
        "## Inputs and outputs",
        "",
        *(
            f"- input `{spec['name']}`: {spec['dtype']} {spec['shape']}"
            for spec in signature["inputs"][:20]
        ),
        *(
            [f"- ... {len(signature['inputs']) - 20} more inputs"]
            if len(signature["inputs"]) > 20
            else []
        ),
        *(
            f"- output `{spec['name']}`: {spec['dtype']} {spec['shape']}"
            for spec in signature["outputs"]
        ),
    ]
    if signature.get("class_labels"):
        labels = ", ".join(map(str, signature["class_labels"][:50]))
        lines.append(f"- classes: {labels}")
    lines += [
        "",
        "## Lineage",
        "",
        f"- run directory: `{card['run_dir']}`",
        f"- code: git commit `{commit}`{dirty}",
        f"- data fingerprint: `{card['data_fingerprint']}`",
        f"- parameters: {card['parameter_count']:,}",
        f"- trained: {card.get('run_started_at')} to {card.get('run_finished_at')}",
        f"- exported: {card['exported_at']} with JAX {card['jax_version']} for "
        f"{', '.join(card['platforms'])}",
        "",
        "## Packages",
        "",
        *(f"- {name} {version}" for name, version in sorted(card["packages"].items()) if version),
        "",
        "## Resolved training config",
        "",
        "```json",
        json.dumps(card["config"], indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
