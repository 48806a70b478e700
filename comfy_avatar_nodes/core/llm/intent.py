"""Intent: what does the user want? One label from a fixed set, a confidence and a
rewritten prompt for the next stage (the intent role's model, JSON mode)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import AvatarError
from .client import LLMClient, ask_json, user_message

log = logging.getLogger("comfy_avatar.intent")

STAGE = "Intent"
INTENTS = ("create_3d_model", "modify_model", "question", "other")
BUILD_INTENTS = ("create_3d_model", "modify_model")

SYSTEM = f"""You route requests for a 3D asset tool. Classify the user's request (text, and any
attached sketches or reference images) into exactly one intent:
- create_3d_model: they want a new 3D object/asset/model built.
- modify_model: they want an existing 3D model changed (recolour, resize, add a part ...).
- question: they ask a question (how/what/why ...) and want an answer, not a model.
- other: anything else (greetings, unrelated requests, unclear text).
Reply with ONLY a JSON object:
{{"intent": one of {list(INTENTS)}, "confidence": number from 0 to 1,
  "rewritten_prompt": "the request restated clearly and completely for the next stage (for a model:
  the object, its parts, sizes in metres if given, colours, style; for a question: the question)",
  "reason": "a few words"}}"""


@dataclass
class Intent:
    intent: str
    confidence: float
    rewritten_prompt: str
    reason: str = ""

    @property
    def builds(self) -> bool:
        return self.intent in BUILD_INTENTS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _problems(obj: dict[str, Any]) -> list[str]:
    out = []
    if obj.get("intent") not in INTENTS:
        out.append(f"'intent' must be one of {list(INTENTS)}, got {obj.get('intent')!r}")
    conf = obj.get("confidence")
    if not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0 <= conf <= 1:
        out.append(f"'confidence' must be a number from 0 to 1, got {conf!r}")
    rp = obj.get("rewritten_prompt")
    if not isinstance(rp, str) or not rp.strip():
        out.append("'rewritten_prompt' must be a non-empty string")
    return out


def check_prompt(prompt: str, images: Sequence[bytes] = (), stage: str = STAGE) -> str:
    text = (prompt or "").strip()
    if not text and not images:
        raise AvatarError(
            f"{stage}: prompt",
            "is empty (and no sketch or image is connected)",
            "type what you want, e.g. 'a low wooden stool with three legs'",
        )
    return text


def classify(client: LLMClient, prompt: str, images: Sequence[bytes] = (), *, repairs: int = 2) -> Intent:
    """Ask the intent model; an unusable answer gets ``repairs`` more round-trips, then an error."""
    text = check_prompt(prompt, images)
    msg = user_message(f"Request: {text or '(no text; see the attached image)'}\nAnswer in JSON.", images)
    obj = ask_json(
        client, [{"role": "system", "content": SYSTEM}, msg], stage=STAGE, validate=_problems, repairs=repairs
    )
    result = Intent(
        intent=obj["intent"],
        confidence=float(obj["confidence"]),
        rewritten_prompt=obj["rewritten_prompt"].strip(),
        reason=str(obj.get("reason") or ""),
    )
    log.info("intent: %s (%.2f)", result.intent, result.confidence)
    return result
