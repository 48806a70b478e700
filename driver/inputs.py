"""``--input NAME=FILE``: which node input a file goes to, and uploading it there.

NAME is a node id or exact title (``_meta.title``): the file goes to that node's
``image`` input, or to the input named after a dot (``--input "Reference.mask=m.png"``).
The input must already hold a plain value (not a link). A NAME that matches no node,
or several nodes by title, is a usage error (use the node id then).

``run`` and ``batch`` share this, so a NAME means the same node in both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .client import ComfyClient

log = logging.getLogger("comfy_avatar.driver.inputs")

# Every upload goes below this subfolder of ComfyUI's input folder (batches add their id).
UPLOAD_SUBFOLDER = "comfy-avatar"


def parse_input_specs(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """(NAME, file) per ``NAME=FILE``; each file must exist before anything is uploaded."""
    out = []
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--input {spec}", "must look like NAME=FILE", "e.g. --input image=photo.png")
        path = Path(file).expanduser()
        if not path.is_file():
            raise UsageError(f"--input {spec}", f"file {path} does not exist", "pass an existing file")
        out.append((name, path))
    return out


def find_input_target(prompt: dict[str, Any], name: str) -> tuple[str, str]:
    """(node id, input name) that ``--input NAME=...`` sets; see the module docstring."""
    candidates = [(name, "image")]
    if "." in name:
        node_part, _, input_part = name.rpartition(".")
        candidates.append((node_part, input_part))
    for node_name, input_name in candidates:
        ids = [name_ for name_ in prompt if name_ == node_name]
        if not ids:
            ids = [nid for nid, n in prompt.items() if (n.get("_meta") or {}).get("title") == node_name]
        if len(ids) > 1:
            raise UsageError(f"--input {name}", f"matches nodes {', '.join(ids)} by title", "use the node id instead")
        if ids and input_name in (prompt[ids[0]].get("inputs") or {}):
            value = prompt[ids[0]]["inputs"][input_name]
            if isinstance(value, list):
                raise UsageError(
                    f"--input {name}",
                    f"input '{input_name}' of node {ids[0]} is linked to another node",
                    "target the loader node that feeds it",
                )
            return ids[0], input_name
    loaders = [
        f"{nid} ({n.get('class_type')}{', title ' + repr(n['_meta']['title']) if (n.get('_meta') or {}).get('title') else ''})"
        for nid, n in prompt.items()
        if isinstance((n.get("inputs") or {}).get("image"), str)
    ]
    raise UsageError(
        f"--input {name}",
        "no node with that id or title has an 'image' input (or NAME.INPUT)",
        "use one of: " + (", ".join(loaders) if loaders else "(this workflow has no image loader)"),
    )


def apply_inputs(prompt: dict[str, Any], inputs: Sequence[tuple[str, Path]], client: ComfyClient) -> dict[str, Any]:
    """Upload each file and return a copy of ``prompt`` with the targets set."""
    prompt = json.loads(json.dumps(prompt))  # a copy in plain JSON types, as the server will see it
    targets = [(find_input_target(prompt, name), path) for name, path in inputs]  # validate all before uploading
    for (node_id, input_name), path in targets:
        uploaded = client.upload(path, subfolder=UPLOAD_SUBFOLDER)
        prompt[node_id]["inputs"][input_name] = uploaded.ref
        log.info("input %s -> node %s.%s = %s", path, node_id, input_name, uploaded.ref)
    return prompt
