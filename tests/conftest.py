"""Shared test helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_recipe_module(recipe: str, name: str):
    """A recipe's driver, ``recipes/<recipe>/local/<name>.py`` (a script, not part of the package), as a module,
    so the tests exercise the code the recipe runs. Loaded once, registered as ``recipes.<recipe>.local.<name>``."""
    module_name = f"recipes.{recipe}.local.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "recipes" / recipe / "local" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
