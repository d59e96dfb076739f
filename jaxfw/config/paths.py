"""Where the shipped configs live: top-level `conf/` and `recipes/` in a source
checkout (editable install), or `jaxfw/_configs/` inside an installed wheel."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _config_root() -> Path:
    bundled = _PACKAGE_DIR / "_configs"
    return bundled if bundled.is_dir() else _PACKAGE_DIR.parent


def conf_dir() -> Path:
    """Hydra's primary config directory (config.yaml and the config groups)."""
    return _config_root() / "conf"


def recipes_dir() -> Path:
    """The complete experiments, one yaml file per recipe."""
    return _config_root() / "recipes"
