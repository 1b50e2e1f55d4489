"""Command-line flags from the settings dataclasses: declared once, by their docstrings.

A field whose docstring starts with ``--name:`` is the flag ``--name``; the rest of the
docstring is its ``--help`` line, to which the default is added. The annotation says how
the text becomes the value (``bool``: a switch; ``float``: a duration such as ``15s``;
``int``; ``str``; ``Path``); a ``tuple`` field says it in ``field(metadata=...)``
(``adapter.settings.COMMA_SEPARATED``, ``REPEATABLE``, ``REPEATABLE_HEADER``), as do
``choices`` and ``metavar``. A field whose default factory is a settings class is a
group: its flags form one argument group, titled by the class docstring's first line.

The three steps of an options object, for a whole settings tree:

- :func:`add_flags` adds every flag of the tree to a parser (the ``dest`` is argparse's
  own, from the flag's name: ``--prometheus-url`` -> ``args.prometheus_url``);
- :func:`from_args` builds the tree back from the parsed arguments (fields without a
  flag keep their defaults);
- ``validate()`` on the tree (``adapter.settings``) reports every problem at once.

The docstrings are read from the source of ``adapter/settings.py`` (``inspect``), which
every install of the package carries; they are not runtime attributes.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from adapter.core.durations import format_duration, parse_duration

T = TypeVar("T")

_FLAG_DOC = re.compile(r"(--[a-z][a-z0-9-]*): (.+)", re.DOTALL)


def duration(text: str) -> float:
    """argparse ``type`` for durations (``500ms``, ``15s``, ``2m``): seconds."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def comma_separated(text: str) -> tuple[str, ...]:
    """argparse ``type`` for ``a,b,c``: the non-empty parts, stripped, in order."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def header(text: str) -> tuple[str, str]:
    """argparse ``type`` for ``Name: value``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


_READERS: Mapping[str, Callable[[str], Any]] = {
    "int": int,
    "str": str,
    "str | None": str,
    "Path | None": Path,
    "float": duration,
    "float | None": duration,
}
"""How a flag's text becomes the value, by the field's annotation (as written)."""
_PARSES: Mapping[str, dict[str, Any]] = {
    "comma-separated": {"type": comma_separated},
    "repeatable": {"action": "append"},
    "header": {"action": "append", "type": header},
}
"""argparse arguments by ``metadata["parse"]``."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """One field's flag."""

    name: str
    """Like ``--secure-port``."""
    help: str
    """The docstring after ``--name:``, on one line."""
    field: dataclasses.Field[Any]

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments (argparse's own choice for ``name``)."""
        return self.name[2:].replace("-", "_")

    @property
    def repeatable(self) -> bool:
        return self.field.metadata.get("parse") in {"repeatable", "header"}

    def default_text(self) -> str | None:
        """The default as a user writes it (``10s``, ``a,b``), or None when there is none."""
        default: object = self.field.default
        if default is None or default is False or default == ():
            return None
        if isinstance(default, float) and _READERS.get(str(self.field.type)) is duration:
            return format_duration(default)
        if isinstance(default, tuple):
            return ",".join(default)
        return str(default)

    def arguments(self) -> dict[str, Any]:
        """``add_argument`` keyword arguments."""
        meta, annotation = self.field.metadata, str(self.field.type)
        shown = self.default_text()
        text = self.help.replace("``", "'")
        text = text if shown is None else f"{text} (default: {shown})"
        kwargs: dict[str, Any] = {"dest": self.dest, "help": text.replace("%", "%%")}
        if annotation == "bool":
            if self.field.default is not False:
                raise TypeError(f"{self.name}: a switch must default to False")
            return kwargs | {"action": "store_true"}
        if "parse" in meta:
            kwargs |= _PARSES[meta["parse"]]
        elif annotation in _READERS:
            kwargs["type"] = _READERS[annotation]
        else:
            raise TypeError(f"{self.name}: no reader for {annotation!r}; say it in metadata")
        kwargs["default"] = [] if self.repeatable else self.field.default
        if "choices" not in meta:  # argparse shows {a,b,c}
            kwargs["metavar"] = self._metavar(kwargs.get("type", str))
        for key in ("choices", "metavar"):
            if key in meta:
                kwargs[key] = meta[key]
        return kwargs

    def _metavar(self, reader: Callable[[str], Any]) -> str:
        """``DURATION``, ``N``, ``FILE`` or ``DIR`` by type; else the name's last word."""
        last = self.dest.rsplit("_", 1)[-1].upper()
        kinds: dict[Callable[[str], Any], str] = {duration: "DURATION", int: "N", Path: "FILE"}
        return "DIR" if last == "DIR" else kinds.get(reader, last)

    def read(self, args: argparse.Namespace) -> Any:
        value = getattr(args, self.dest)
        return tuple(value) if self.repeatable else value


@functools.cache
def _docstrings(cls: type) -> Mapping[str, str]:
    """Attribute docstrings (the string after a field) of a class, cleaned up."""
    (node,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(node, ast.ClassDef)
    docs: dict[str, str] = {}
    for statement, following in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def docstring(cls: type, name: str) -> str | None:
    """The docstring of field ``name`` of ``cls`` (None without one)."""
    return _docstrings(cls).get(name)


def group_of(field: dataclasses.Field[Any]) -> type | None:
    """The settings class of a group field (None for a plain field)."""
    factory: object = field.default_factory
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        return factory
    return None


def flag(cls: type, field: dataclasses.Field[Any]) -> Flag | None:
    """The flag of a field, from its docstring (None: the field has no flag)."""
    match = _FLAG_DOC.fullmatch(docstring(cls, field.name) or "")
    if match is None:
        return None
    return Flag(match[1], " ".join(match[2].split()), field)


def flags(cls: type) -> list[Flag]:
    """The flags of ``cls``'s own fields, in field order (not those of its groups)."""
    return [f for field in dataclasses.fields(cls) if (f := flag(cls, field)) is not None]


def tree(cls: type) -> list[type]:
    """The settings classes of the tree ``cls`` in the order their flags are added."""
    groups = [group for field in dataclasses.fields(cls) if (group := group_of(field))]
    return [member for group in groups for member in tree(group)] + [cls]


def names(cls: type) -> list[str]:
    """Every flag of the settings tree ``cls``, in ``--help`` order."""
    return [f.name for member in tree(cls) for f in flags(member)]


def title(cls: type) -> str:
    """A settings class's argument group title: its docstring's first line."""
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Every flag of the settings tree ``cls``: one argument group per class, groups first."""
    for member in tree(cls):
        own = flags(member)
        if own:
            container = parser.add_argument_group(title(member))
            for f in own:
                container.add_argument(f.name, **f.arguments())


def _flag_of(cls: type, name: str) -> Flag:
    (field,) = [field for field in dataclasses.fields(cls) if field.name == name]
    f = flag(cls, field)
    if f is None:
        raise TypeError(f"{cls.__name__}.{name} has no flag")
    return f


def add_flag(container: argparse._ActionsContainer, cls: type, name: str) -> None:
    """The flag of field ``name`` alone (a subcommand sharing one setting's flag)."""
    f = _flag_of(cls, name)
    container.add_argument(f.name, **f.arguments())


def read_flag(cls: type, name: str, args: argparse.Namespace) -> Any:
    """The value of field ``name``'s flag in parsed arguments (see :func:`add_flag`)."""
    return _flag_of(cls, name).read(args)


def from_args(cls: Callable[..., T], args: argparse.Namespace) -> T:
    """The settings tree ``cls`` from arguments parsed by a parser :func:`add_flags` built."""
    return cls(**_values(cls, args))


def _values(cls: Any, args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        group = group_of(field)
        if group is not None:
            values[field.name] = from_args(group, args)
        elif (f := flag(cls, field)) is not None:
            values[field.name] = f.read(args)
    return values
