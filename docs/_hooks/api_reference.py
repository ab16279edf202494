"""MkDocs hook: fill the API page from `asyncdb.__all__`.

api.md holds the marker `<!-- asyncdb-api -->`; this hook replaces it with one mkdocstrings
block per public name: the main classes first in reading order, then any other public class,
then functions and other names (so a name added to `__all__` is documented without touching
the docs), then the exceptions as a tree followed by one block each. The package is imported
from this checkout, not from wherever the venv's editable install points.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- asyncdb-api -->"
# Reading order for the names that exist today; unknown names follow in `__all__` order.
LEADING = (
    "Database",
    "Connection",
    "Transaction",
    "Retry",
    "Record",
    "ExecuteResult",
    "DatabaseURL",
)


def _load_asyncdb(config: Any) -> Any:
    root = str(Path(config["config_file_path"]).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module("asyncdb")
    loaded_from = Path(module.__file__).resolve().parent.parent
    if str(loaded_from) != root:
        raise RuntimeError(f"api_reference hook: asyncdb imported from {loaded_from}, not {root}")
    return module


def _block(name: str, *, signature: bool = True) -> str:
    options = ["show_root_heading: true", "heading_level: 3"]
    if not signature:
        options += ["show_signature: false", "separate_signature: false"]
    return f"::: asyncdb.{name}\n    options:\n" + "".join(f"      {o}\n" for o in options)


def _own_init(cls: type, depth: int) -> bool:
    """Show the signature of a root exception, or of one that defines its own __init__ (the
    others repeat their base's, which is documented just above them)."""
    return depth == 0 or "__init__" in vars(cls)


def _exception_tree(exceptions: list[type[BaseException]]) -> list[tuple[int, type]]:
    """Depth-first over the public exceptions, each under its nearest public base."""
    public = set(exceptions)

    def parent(cls: type) -> type | None:
        return next((base for base in cls.__mro__[1:] if base in public), None)

    rows: list[tuple[int, type]] = []

    def walk(node: type | None, depth: int) -> None:
        for cls in exceptions:
            if parent(cls) is node:
                rows.append((depth, cls))
                walk(cls, depth + 1)

    walk(None, 0)
    return rows


def render(module: Any) -> str:
    names = list(module.__all__)
    objects = {name: getattr(module, name) for name in names}
    exceptions = [
        objects[n]
        for n in names
        if isinstance(objects[n], type) and issubclass(objects[n], BaseException)
    ]
    others = [n for n in names if objects[n] not in exceptions]
    ordered = [n for n in LEADING if n in others] + [n for n in others if n not in LEADING]

    classes = [n for n in ordered if isinstance(objects[n], type)]
    rest = [n for n in ordered if n not in classes]
    out = ["## Classes\n"]
    out += [_block(n) for n in classes]
    if rest:
        out.append("## Functions and other names\n")
        out += [_block(n) for n in rest]
    out.append("## Exceptions\n")
    out.append(
        "Every error asyncdb raises derives from `DatabaseError` (the driver's own exception "
        "is `.orig` and `__cause__`); `Rollback` is not an error but a signal you raise. "
        "Each name links to its entry below.\n"
    )
    tree = _exception_tree(exceptions)
    out.append(
        "\n".join(
            f"{'    ' * depth}- [`{cls.__name__}`][asyncdb.{cls.__name__}]" for depth, cls in tree
        )
        + "\n"
    )
    out += [_block(cls.__name__, signature=_own_init(cls, depth)) for depth, cls in tree]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(_load_asyncdb(config)))
