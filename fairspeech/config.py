"""One loader for every TOML config: read it, apply ``--set`` overrides, and check it against its dataclass.

    config = load(MyConfig, "recipes/x/config.toml", ["train.steps=100"], seed=args.seed)
    tree = apply_overrides(read_toml(path), ["train.epochs=3"])      # the plain tables
    config = from_dict(MyConfig, tree, source=str(path))              # checked, as dataclasses

* :func:`read_toml`: a file's tables; a file may start from another with ``base = "other.toml"``
  (relative to itself): the other file is read first (its own ``base`` too) and this file's keys
  replace its keys, table by table.
* :func:`apply_overrides`: ``section.key=value`` overrides; the value is parsed as TOML (``3``,
  ``"bpe"``, ``[1, 2]``, ``true``), and taken as a string when it is not TOML (``train.tokenizer=bpe``).
* :func:`from_dict`: a (nested) dataclass from the tables. Each table maps onto the field of that
  name, recursively where the field's type is a dataclass; keys that name no field are refused,
  and every value is checked against its field's annotation (``int``, ``float`` (an integer is
  accepted), ``bool``, ``str``, ``list[...]``, ``tuple[...]``, ``dict``, ``X | None``, a dataclass),
  so a wrong value fails here, before any training starts. Arrays become tuples for ``tuple`` fields
  and in frozen dataclasses.
* :func:`load`: the three together, plus keyword field values (command-line options) on top.

Every problem is a :class:`~fairspeech.errors.ConfigError` naming the file, the section and the key; it is
an :class:`~fairspeech.errors.InputError`, so the command line prints it on one line and exits with 2.
This module is core: it imports nothing from fairspeech but :mod:`fairspeech.errors`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from fairspeech.errors import ConfigError

__all__ = ["ConfigError", "apply_overrides", "from_dict", "load", "parse_override", "read_toml"]


# -- reading -----------------------------------------------------------------------------------------

_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def read_toml(path: str | Path) -> dict:
    """A config file's tables, with its ``base`` file (if any) underneath."""
    return _read(Path(path), ())


def _read(path: Path, chain: tuple[Path, ...]) -> dict:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such config file", source) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text ({error.reason} at byte {error.start})", source) from None
    except OSError as error:
        raise ConfigError(f"cannot be read ({error.strerror or error})", source) from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        detail = str(error.args[0] if error.args else error)
        at = _AT_LINE.search(detail)
        where = f" at line {at[1]}, column {at[2]}" if at else ""
        raise ConfigError(f"not valid TOML{where}: {_AT_LINE.sub('', detail)}", source) from None
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise ConfigError(f"base: expected the path of another TOML file, got {base!r}", source, key="base")
    base_path = path.parent / base
    if base_path.resolve() in {p.resolve() for p in (*chain, path)}:
        raise ConfigError(f"base = {base!r} starts a loop: {' -> '.join(map(str, (*chain, path, base_path)))}", source, key="base")
    if not base_path.is_file():
        raise ConfigError(f"base = {base!r}: no such file {base_path}", source, key="base")
    return _merge(_read(base_path, (*chain, path)), tree)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# -- overrides ---------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, object]:
    """'train.epochs=3' -> ('train.epochs', 3); a value that is not TOML is taken as a string."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def set_dotted(tree: dict, dotted: str, value) -> None:
    """``tree["a"]["b"] = value`` for ``"a.b"``, making the tables on the way."""
    *parents, leaf = dotted.split(".")
    for i, key in enumerate(parents):
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"{'.'.join(parents[: i + 1])} is {tree!r}, not a table", key=dotted)
    tree[leaf] = value


def apply_overrides(tree: dict, overrides: Sequence[str] = ()) -> dict:
    """``tree`` with each ``section.key=value`` of ``overrides`` set in it (in place; returned)."""
    for text in overrides:
        try:
            set_dotted(tree, *parse_override(text))
        except ConfigError as error:
            raise ConfigError(error.message if error.message.startswith("--set") else f"--set {text}: {error.message}") from None
    return tree


# -- checking ----------------------------------------------------------------------------------------

class _Mismatch(Exception):
    """A value that does not fit its annotation (turned into a ConfigError where the key is known)."""


_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"), (list, "an array"),
          (tuple, "an array"), (dict, "a table"), (type(None), "no value"))


def _kind(value) -> str:
    return next((name for cls, name in _KINDS if isinstance(value, cls)), type(value).__name__)


def _name(hint) -> str:
    """An annotation as it is written: ``int | None``, ``list[str]``, ``tuple[str, ...]``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(a) for a in args)
    if hint is type(None):
        return "None"
    if dataclasses.is_dataclass(hint):
        return "a table"
    if origin is typing.Literal:
        return " or ".join(map(repr, args))
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else getattr(origin, "__name__", str(origin))
    return getattr(hint, "__name__", str(hint))


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (``Any`` where an annotation cannot be resolved)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation naming something only imported for type checkers
        namespace = vars(sys.modules.get(cls.__module__, types.ModuleType("none")))
        hints = {}
        for f in dataclasses.fields(cls):
            try:
                hints[f.name] = eval(f.type, namespace) if isinstance(f.type, str) else f.type  # noqa: S307 (annotations)
            except Exception:
                hints[f.name] = Any
        return hints


def _check(value, hint, source: str, section: str):
    """``value`` as the field annotated ``hint`` holds it, or _Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _check(value, arm, source, section)
            except _Mismatch:
                continue
        raise _Mismatch
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return from_dict(hint, value, source, section=section)
        raise _Mismatch
    if hint is bool or hint is int or hint is float or hint is str:
        fits = isinstance(value, hint) if hint is not float else isinstance(value, (int, float))
        if not fits or (hint is not bool and isinstance(value, bool)):
            raise _Mismatch
        return value
    if hint is type(None):
        if value is not None:
            raise _Mismatch
        return value
    if origin is typing.Literal:
        if value not in args:
            raise _Mismatch
        return value
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            items = [_check(v, a, source, section) for v, a in zip(value, args)]
        else:
            items = [_check(v, args[0], source, section) for v in value] if args else list(value)
        return tuple(items) if container is tuple else items
    if container in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise _Mismatch
        if args:
            return {_check(k, args[0], source, section): _check(v, args[1], source, section) for k, v in value.items()}
        return value
    if isinstance(container, type) and not isinstance(value, container):
        raise _Mismatch
    return value


def _freeze(value):
    """Arrays as tuples, all the way down (a frozen dataclass's fields stay hashable)."""
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def _table(section: str) -> str:
    return f"[{section}]" if section else "the top level"


def _unknown_keys(unknown: list[str], known: list[str], source: str, section: str) -> ConfigError:
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"[{section}] has unknown keys" if section else "unknown keys"
    return ConfigError(f"{where} {unknown}{hint}{'' if section else ' at the top level'}; known: {known}", source, section or None, unknown[0])


def from_dict(cls: type, tree: Mapping, source: str = "config", *, section: str = ""):
    """An instance of the dataclass ``cls`` from ``tree`` (its tables), every key and value checked.

    ``source`` names the file in errors; ``section`` is the dotted table ``tree`` was read from (for a
    sub-table checked on its own, e.g. ``section="train"``)."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{_table(section)} must be a table, got {tree!r} ({_kind(tree)})", source, section or None)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = sorted(f.name for f in fields)
    unknown = sorted(set(tree) - set(known))
    if unknown:
        raise _unknown_keys(unknown, known, source, section)
    hints, frozen = _hints(cls), cls.__dataclass_params__.frozen
    values = {}
    for f in fields:
        where = f"[{section}] {f.name}" if section else f.name
        if f.name not in tree:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing (it is required)", source, section or None, f.name)
            continue
        value, hint = tree[f.name], hints.get(f.name, Any)
        try:
            value = _check(value, hint, source, f"{section}.{f.name}" if section else f.name)
        except _Mismatch:
            raise ConfigError(f"{where}: expected {_name(hint)}, got {value!r} ({_kind(value)})", source, section or None, f.name) from None
        values[f.name] = _freeze(value) if frozen else value
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as error:  # the dataclass's own checks (__post_init__)
        raise ConfigError(f"[{section}] {error}" if section else str(error), source, section or None) from error


# -- all together ------------------------------------------------------------------------------------

def load(cls: type | Callable[[dict, str], Any], path: str | Path | None = None, overrides: Sequence[str] = (), **fields):
    """``cls`` from the TOML file at ``path`` (None: the defaults), ``--set`` style ``overrides`` on top,
    then keyword ``fields`` (top-level keys, e.g. command-line options; those given as None are left to
    the file, as an option that was not given).

    ``cls`` is a dataclass, or a function ``(tree, source) -> config`` for a config whose file layout
    is not its dataclass's (it then calls :func:`from_dict` itself). An error that a ``--set``
    override caused names the override beside the file."""
    source = str(path) if path else "defaults"
    tree = read_toml(path) if path else {}
    apply_overrides(tree, overrides)
    tree.update({k: v for k, v in fields.items() if v is not None})
    build = functools.partial(from_dict, cls) if dataclasses.is_dataclass(cls) else cls
    try:
        return build(tree, source)
    except ConfigError as error:
        blamed = _blamed_override(error, overrides)
        if blamed is None:
            raise
        raise ConfigError(error.message, f"{source}, --set {blamed}", error.section, error.key) from None


def _blamed_override(error: ConfigError, overrides: Sequence[str]) -> str | None:
    """The last override that set the key ``error`` is about (or a table above it), if any."""
    if error.key is None:
        return None
    dotted = f"{error.section}.{error.key}" if error.section else error.key
    for text in reversed(overrides):
        key = text.partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return text
    return None
