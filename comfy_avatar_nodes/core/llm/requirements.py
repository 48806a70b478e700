"""Requirements: prompt + sketches -> a JSON document checked against the pack's schema
(schemas/requirements.schema.json), from the vision role's model in JSON mode."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import AvatarError
from ..jsontext import parse_object, require_object
from .client import LLMClient, ask_json, user_message
from .intent import check_prompt

log = logging.getLogger("comfy_avatar.requirements")

STAGE = "Requirements"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "requirements.schema.json"


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def problems(doc: dict[str, Any]) -> list[str]:
    """Schema violations (with their JSON paths) plus cross-field checks; [] when valid."""
    out = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message}")
    if out:
        return out
    names = {m["name"] for m in doc.get("materials", [])}
    for i, part in enumerate(doc.get("parts", [])):
        if part.get("material") and part["material"] not in names:
            out.append(f"parts/{i}/material: {part['material']!r} is not one of the materials {sorted(names)}")
    return out


def validate(doc: Any, what: str = "requirements") -> dict[str, Any]:
    """Raise AvatarError listing every problem when ``doc`` is not valid requirements."""
    example = "the Requirements node's output"
    doc = parse_object(doc, what, example) if isinstance(doc, str) else require_object(doc, what, example)
    found = problems(doc)
    if found:
        raise AvatarError(
            what,
            "does not match the requirements schema: " + "; ".join(found[:10]),
            f"fix the JSON (schema: {SCHEMA_PATH.name})",
        )
    return doc


def _system() -> str:
    return (
        "You turn a request for a 3D object (text plus optional sketches or reference images) into "
        "build requirements for a Blender modeller. Units are metres, Z is up, the object stands on Z=0 "
        "and is centred on X=Y=0. Break the object into simple parts (box, cylinder, sphere, cone, torus, "
        "plane, capsule, wedge, or custom with notes). Give every part a size [X, Y, Z] in metres and a "
        "position of its centre. Use realistic sizes when none are given. Colours are #RRGGBB. "
        'output_formats lists the files the user wants (glb, fbx, blend); default ["glb"].\n'
        "Reply with ONLY one JSON object that validates against this JSON Schema:\n"
        + json.dumps(schema(), separators=(",", ":"))
    )


def extract(client: LLMClient, prompt: str, images: Sequence[bytes] = (), *, repairs: int = 2) -> dict[str, Any]:
    """Ask the vision model; invalid JSON or schema violations get ``repairs`` more round-trips."""
    text = check_prompt(prompt, images, STAGE)
    msg = user_message(
        f"Request: {text or '(see the attached sketch)'}\n"
        f"{len(images)} sketch/reference image(s) attached.\nAnswer in JSON.",
        images,
    )
    doc = ask_json(
        client, [{"role": "system", "content": _system()}, msg], stage=STAGE, validate=problems, repairs=repairs
    )
    log.info("requirements: %s, %d parts", doc.get("object_name"), len(doc.get("parts", [])))
    return doc
