"""The configuration reference in docs/OPERATIONS.md, generated from :class:`Settings`."""

from __future__ import annotations

import ast
import inspect
import itertools

import msgspec

from backend import settings as settings_module
from backend.settings import Settings

__all__ = ["render_settings_reference"]


def _field_docs() -> dict[str, str]:
    tree = ast.parse(inspect.getsource(settings_module))
    docs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            body = node.body
            for current, following in itertools.pairwise(body):
                if (
                    isinstance(current, ast.AnnAssign)
                    and isinstance(current.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    docs[current.target.id] = " ".join(following.value.value.split())
    return docs


def render_settings_reference() -> str:
    """A Markdown table: variable, default, meaning."""
    docs = _field_docs()
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for field in msgspec.structs.fields(Settings):
        default = field.default
        shown = "(unset)" if default is None else msgspec.json.encode(default).decode()
        lines.append(f"| `CONFIDE_{field.name.upper()}` | `{shown}` | {docs.get(field.name, '')} |")
    return "\n".join(lines) + "\n"
