"""Whether this environment is the one requirements.lock.txt pins (recorded in run.json).

`make install` (and so the README's two commands and CI) installs every package at the
version and hash the lock file pins; `make lock` refreshes the file. A run records here
whether the packages it ran with are exactly those, and which differ if not, so a number
can be traced to an environment someone else can rebuild. The lock sits beside the
package in a checkout; an installed wheel or an environment of the user's own has none
(`file: null`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from pathlib import Path
from typing import Any

LOCK_FILE = "requirements.lock.txt"
# The checkout's top: jaxfw/observe/lock.py -> the folder holding jaxfw/ and pyproject.toml.
CHECKOUT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
MAX_LISTED = 20  # mismatches written into run.json; the count says how many in all


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of every `name==version` line of a pip requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalized(match.group(1))] = match.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    versions = {}
    for dist in importlib.metadata.distributions():
        # One parse of METADATA per distribution (`dist.version` would parse it again):
        # about a fifth of a second saved in every run's start.
        metadata = dist.metadata
        if metadata["Name"]:
            versions[normalized(metadata["Name"])] = metadata["Version"]
    return versions


@functools.cache
def lock_status(checkout: Path = CHECKOUT) -> dict[str, Any]:
    """{"file", "matched", "packages", "mismatch_count", "mismatches"} for the lock file at
    the top of `checkout`."""
    path = checkout / LOCK_FILE
    if not path.is_file():
        return {"file": None, "matched": None}
    pins = read_pins(path)
    installed = installed_versions()
    mismatches = [
        {"package": name, "locked": version, "installed": installed.get(name)}
        for name, version in sorted(pins.items())
        if installed.get(name) != version
    ]
    return {
        "file": LOCK_FILE,
        "matched": not mismatches,
        "packages": len(pins),
        "mismatch_count": len(mismatches),
        "mismatches": mismatches[:MAX_LISTED],
    }
