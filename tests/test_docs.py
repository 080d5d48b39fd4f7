"""The README documents every setting of every service."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULES = sorted(
    f"{path.parent.name}.settings" for path in ROOT.glob("services/*/src/*/settings.py")
)


def settings_classes(module_name: str) -> list[type[BaseSettings]]:
    module = importlib.import_module(module_name)
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseSettings)
        and value.__module__ == module_name
    ]


def test_every_service_has_settings() -> None:
    assert "polar_organization.settings" in SETTINGS_MODULES


@pytest.mark.parametrize("module_name", SETTINGS_MODULES)
def test_readme_documents_every_setting(module_name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    classes = settings_classes(module_name)
    assert classes, f"no settings class in {module_name}"
    missing = [
        f"POLAR_{name.upper()}"
        for cls in classes
        for name in cls.model_fields
        if f"`POLAR_{name.upper()}`" not in readme
    ]
    assert not missing, f"README.md lacks {missing}"
