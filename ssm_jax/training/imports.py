"""Import a user's modules (e.g. a registered SSM variant) named in a config.

``config.import_modules`` is a list of dotted module names (``my_pkg.my_ssm``) or paths
to ``.py`` files (``examples/my_ssm.py``). Importing them runs their registration code,
so ``--config.model.layer=my_ssm`` can select the variant they register.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType


def import_module_or_file(name: str) -> ModuleType:
    """Import ``name``: a dotted module name, or a path to a ``.py`` file."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"import_modules entries must be non-empty strings, got {name!r}")
    if name.endswith(".py") or os.sep in name:
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"import_modules: file {name!r} does not exist (resolved to {path})")
        mod_name = os.path.splitext(os.path.basename(path))[0]
        if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == path:
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]
            raise
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"import_modules: cannot import module {name!r} ({e}); give a dotted "
                                  "module name on sys.path or a path to a .py file") from e


def import_user_modules(names) -> list[ModuleType]:
    """Import every entry of ``names`` (a list, or None/empty for nothing)."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    return [import_module_or_file(n) for n in names]
