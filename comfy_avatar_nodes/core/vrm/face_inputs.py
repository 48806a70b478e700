"""The face stage's inputs, checked before Blender starts: the settings (config ``face:``), the node's
widgets and the landmark overrides a user types when the finder got a face wrong.

    opts = FaceOptions.from_inputs(settings.face, landmarks="left_eye=0.64,0.52; mouth=0.5,0.8", material="mtoon")
    args["face"] = opts.to_args()        # what blender_cli/_vrm_common.pose_and_export reads

Landmark positions are fractions of the head box the finder reports (x from the picture's left edge,
which is the avatar's right side in a front view; y from the top of the head): the Blender job's
result (``face.finder``) and the VRM's asset.extras show the box and where each landmark landed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config import FaceSettings
from ..errors import AvatarError
from ..jsontext import parse_object
from .face import LANDMARKS

MATERIALS = ("mtoon", "pbr")
PICTURES = ("auto", "texture", "render")
LANDMARK_EXAMPLE = 'left_eye=0.64,0.52; right_eye=0.36,0.52; mouth=0.5,0.8 (or JSON {"mouth": [0.5, 0.8]})'
"""The avatar's left eye is on the picture's right (a front view faces us): its x is the larger one."""


def parse_landmarks(text: str | dict | None) -> dict[str, list[float]]:
    """``name=x,y; name=x,y`` or a JSON object -> {landmark: [x, y]}, checked (names, 0..1)."""
    if isinstance(text, dict):
        raw: dict[str, Any] = text
    else:
        text = (text or "").strip()
        if not text:
            return {}
        if text.startswith("{"):
            raw = parse_object(text, "face_landmarks", LANDMARK_EXAMPLE)
        else:
            raw = {}
            for part in filter(None, (p.strip() for p in re.split(r"[;\n]", text))):
                name, sep, value = part.partition("=")
                if not sep:
                    raise AvatarError("face_landmarks", f"{part!r} is not name=x,y", f"write {LANDMARK_EXAMPLE}")
                raw[name.strip()] = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    out: dict[str, list[float]] = {}
    for name, value in raw.items():
        if name not in LANDMARKS:
            raise AvatarError(
                "face_landmarks", f"{name!r} is not a landmark", f"use {', '.join(LANDMARKS)} ({LANDMARK_EXAMPLE})"
            )
        try:
            if isinstance(value, (str, bytes)) or any(isinstance(v, bool) for v in value):
                raise TypeError  # JSON true is not 1.0, and "0.5,0.8" inside JSON is not a pair
            x, y = (float(v) for v in value)
        except (TypeError, ValueError):
            raise AvatarError(
                "face_landmarks", f"{name} needs two numbers x,y, got {value!r}", f"write {LANDMARK_EXAMPLE}"
            ) from None
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise AvatarError(
                "face_landmarks",
                f"{name}={x:g},{y:g} is outside the head box",
                "give fractions of the head box between 0 and 1 (0,0 = top left of the picture)",
            )
        out[name] = [x, y]
    for feature in ("eye", "brow"):
        left, right = out.get(f"left_{feature}"), out.get(f"right_{feature}")
        if left and right and left[0] < right[0]:
            # the VRM would blink its left eye with blinkRight, and the validator would refuse it
            raise AvatarError(
                "face_landmarks",
                f"left_{feature} (x={left[0]:g}) is left of right_{feature} (x={right[0]:g}) in the picture: "
                "left and right are swapped",
                f"left_{feature} is the avatar's own left, on the picture's right: give it the larger x "
                f"({LANDMARK_EXAMPLE})",
            )
    return out


@dataclass(frozen=True)
class FaceOptions:
    expressions: bool = True
    material: str = "mtoon"
    picture: str = "auto"
    landmarks: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.material not in MATERIALS:
            raise AvatarError(
                "material",
                f"{self.material!r} is not one of {', '.join(MATERIALS)}",
                "use mtoon (VRM's toon shader, the default) or pbr (keep the glTF PBR material)",
            )
        if self.picture not in PICTURES:
            raise AvatarError(
                "face.picture",
                f"{self.picture!r} is not one of {', '.join(PICTURES)}",
                "use auto, texture or render (config face.picture)",
            )

    @classmethod
    def from_inputs(
        cls,
        settings: FaceSettings | None = None,
        *,
        expressions: bool | None = None,
        material: str | None = None,
        landmarks: str | dict | None = None,
    ) -> FaceOptions:
        """Config defaults, then the node's widgets (None = keep the configured value)."""
        s = settings or FaceSettings()
        return cls(
            expressions=s.expressions if expressions is None else bool(expressions),
            material=(material or s.material),
            picture=s.picture,
            landmarks=parse_landmarks(landmarks),
        )

    def to_args(self) -> dict[str, Any]:
        return {
            "expressions": self.expressions,
            "material": self.material,
            "source": self.picture,
            "overrides": dict(self.landmarks),
        }


def face_text(result: dict[str, Any]) -> str:
    """One line for the node's UI and the log: what the face stage found and made."""
    face = result.get("face") or {}
    finder = face.get("finder") or {}
    if not face:
        return "expressions: off"
    made = len(face.get("generated", []))
    kept = len(face.get("existing", {}))
    where = (
        f"face found (confidence {finder.get('confidence', 0):.2f}, from the {finder.get('source', '?')})"
        if finder.get("found")
        else "NO face found"
    )
    return f"{where}; {made} expressions generated, {kept} from existing shape keys; lookAt {face.get('look_at')}"


def log_face(log: Any, name: str, result: dict[str, Any]) -> None:
    """The face stage's verdict and warnings in the log (the finder's warnings say what to set)."""
    face = result.get("face") or {}
    if not face:
        return
    log.info("%s: %s", name, face_text(result))
    for w in (face.get("finder") or {}).get("warnings", []):
        log.warning("%s: %s", name, w)


__all__ = ["FaceOptions", "parse_landmarks", "face_text", "log_face", "MATERIALS", "LANDMARK_EXAMPLE"]
