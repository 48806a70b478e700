"""Workflow files: read one, and tell an API prompt from an editor (UI) workflow.

One classification for every command: ``run`` and ``batch`` (and the converter)
must agree on which files go to POST /prompt as they are and which need converting.

An API prompt is a non-empty ``{node_id: {"class_type": str, "inputs": ...}}``. The
class_type must be a string because ComfyUI looks it up in NODE_CLASS_MAPPINGS:
a number is "node 5 does not exist" at best, and a list or dict makes the server's
own validation raise (an HTTP 500 instead of a message). Checking only that the key
is present, as driver.convert once did, sent such files to the server; here they
are a usage error that says what the two formats look like.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UsageError


def is_api_prompt(data: Any) -> bool:
    """True for an API-format prompt: every entry a node with a string class_type."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, dict) and isinstance(v.get("class_type"), str) for v in data.values())
    )


def is_ui_workflow(data: Any) -> bool:
    """True for what the editor saves: a graph with a node list and links."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def load_workflow(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed workflow file, either format; a UsageError naming the file otherwise."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"workflow {p}", "file not found", "pass the path of a workflow .json") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"workflow {p}", f"not readable JSON ({e})", "pass a workflow exported from ComfyUI") from None
    if not (is_api_prompt(data) or is_ui_workflow(data)):
        raise UsageError(
            f"workflow {p}",
            "is neither an API-format prompt ({id: {class_type, inputs}}) nor a UI workflow (nodes + links)",
            "export it from ComfyUI with Save or Save (API)",
        )
    return data
