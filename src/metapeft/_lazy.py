"""PEP 562 lazy exports: ``import metapeft`` (and the CLI's ``--help``) must not pay for torch and timm.

A package lists its public names and the module each lives in; the module is imported the first
time one of its names is read, and the value is then cached in the package's namespace.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def attach(package: str, exports: dict[str, str], submodules: tuple[str, ...] = ()
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for ``package``; ``exports`` maps a name to its ``.module``."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in submodules:
            value = importlib.import_module(f".{name}", package)
        elif name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
