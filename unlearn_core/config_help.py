"""Read the defaults and help texts of the config dataclasses (`unlearn_core.configs`).

A field is named by its path from the config class, with dots into nested configs:
`help_of(UnetUnlearnConfig, "mask.density")`. Light: no torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def _walk(config, path: str):
    """(the dataclass instance holding the last name, the last name) for `path` on `config`."""
    obj = config() if isinstance(config, type) else config
    *parents, name = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise KeyError(f"{type(obj).__name__} has no field {name!r} (path {path!r})")
    return obj, name


def config_field(config, path: str) -> dataclasses.Field:
    """The dataclasses.Field at `path` (config: a config class or instance)."""
    obj, name = _walk(config, path)
    return next(f for f in dataclasses.fields(obj) if f.name == name)


def help_of(config, path: str) -> str:
    """The help text of the field at `path`."""
    f = config_field(config, path)
    if "help" not in f.metadata:
        raise KeyError(f"field {path!r} of {getattr(config, '__name__', type(config).__name__)} has no help text")
    return f.metadata["help"]


def value_of(config, path: str) -> Any:
    """The value at `path` of a config instance (of a default instance for a config class)."""
    obj, name = _walk(config, path)
    return getattr(obj, name)


def default_of(config_class: type, path: str) -> Any:
    """The default of the field at `path`, nested configs included (the value a default instance has)."""
    return value_of(config_class, path)


def set_value(config, path: str, value: Any) -> None:
    """Set the field at `path` of a config instance (nested configs are changed in place)."""
    obj, name = _walk(config, path)
    setattr(obj, name, value)


def field_paths(config_class: type) -> list[str]:
    """Paths of every field that is not itself a config, nested ones included ("mask.density")."""
    paths = []
    default = config_class()
    for f in dataclasses.fields(default):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            paths += [f"{f.name}.{p}" for p in field_paths(type(value))]
        else:
            paths.append(f.name)
    return paths
