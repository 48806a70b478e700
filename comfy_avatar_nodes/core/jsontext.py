"""JSON that a person typed or pasted (a node widget, a humanoid map, requirements): one parser,
so every such input fails the same way, naming the input, the line and an example to copy."""

from __future__ import annotations

import json
from typing import Any

from .errors import AvatarError


def require_object(value: Any, what: str, example: str) -> dict[str, Any]:
    """``value`` itself when it is a JSON object (dict), else an AvatarError naming ``what``."""
    if not isinstance(value, dict):
        raise AvatarError(
            what, f"must be a JSON object, got {type(value).__name__}", f"write a JSON object such as {example}"
        )
    return value


def parse_object(text: str | None, what: str, example: str, *, source: str = "") -> dict[str, Any]:
    """Widget text -> dict; empty text is ``{}``. ``what`` names the input in the error,
    ``source`` (e.g. a file name) the text's origin, ``example`` a valid value for the fix."""
    if not str(text or "").strip():
        return {}
    try:
        value = json.loads(str(text))
    except json.JSONDecodeError as e:
        where = f"{source} " if source else ""
        raise AvatarError(
            what,
            f"{where}is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
            f"write a JSON object such as {example}",
        ) from None
    return require_object(value, what, example)
