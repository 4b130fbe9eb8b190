"""Every Python package under host/ is listed in pyproject.toml, so a wheel install works too."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_host_package_is_declared() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    found = {
        "onestop." + ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "host").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= declared, f"add to [tool.setuptools] packages: {sorted(found - declared)}"
