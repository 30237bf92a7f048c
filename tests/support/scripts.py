"""The project's scripts (scripts/<name>, Python files without a .py suffix) loaded as modules, so
tests reach their functions and constants as the scripts themselves use them."""

import importlib.machinery
import importlib.util
from types import ModuleType

from tests.support.stack import ROOT


def load_script(name: str) -> ModuleType:
    """scripts/<name>, executed as a module of its own (its `__main__` block does not run)."""
    module_name = name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(module_name, str(ROOT / "scripts" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(module_name, loader))
    loader.exec_module(module)
    return module
