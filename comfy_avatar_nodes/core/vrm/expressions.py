"""The VRM 1.0 expression facts both sides need (stdlib only: blender_cli/_pack.py loads this file by
path inside Blender, the validator imports it): the presets we bind, their override flags, the names
of shape keys that already exist on imported meshes (ARKit, VRoid) and where each preset may move
vertices (checked by the validator, aimed at by the morph generator).

Why the override flags: VRM apps combine expressions by weight. An emotion that already narrows the
eyes (happy, relaxed, sad, angry) *blends* blink so a blink on top of a smile does not push the lids
through the cheeks; surprised holds the eyes and the mouth wide open, so it *blocks* blink and the
visemes (a lip-sync track must not close a surprised mouth). Visemes, blink and gaze override nothing.
"""

from __future__ import annotations

VISEMES = ("aa", "ih", "ou", "ee", "oh")
BLINKS = ("blink", "blinkLeft", "blinkRight")
EMOTIONS = ("happy", "angry", "sad", "relaxed", "surprised")
LOOKS = ("lookUp", "lookDown", "lookLeft", "lookRight")
PRESETS = (*VISEMES, *BLINKS, *EMOTIONS, *LOOKS)
"""The 17 VRM 1.0 presets other than neutral, each bound to a morph target on every avatar we write."""

ALL_PRESETS = ("neutral", *PRESETS)

# preset -> (overrideBlink, overrideLookAt, overrideMouth)
OVERRIDES: dict[str, tuple[str, str, str]] = {
    **{p: ("none", "none", "none") for p in (*VISEMES, *BLINKS, *LOOKS)},
    "happy": ("blend", "none", "blend"),
    "angry": ("blend", "none", "blend"),
    "sad": ("blend", "none", "blend"),
    "relaxed": ("blend", "none", "blend"),
    "surprised": ("block", "none", "block"),
}

# VRM 1.0 preset name -> the VRM add-on's property name (editor/vrm1/property_group.py)
ADDON_NAMES = {p: "".join("_" + c.lower() if c.isupper() else c for c in p) for p in ALL_PRESETS}

# VRoid Studio's face shape keys (Fcl_*): the preset each one is.
VROID_KEYS = {
    "Fcl_MTH_A": "aa",
    "Fcl_MTH_I": "ih",
    "Fcl_MTH_U": "ou",
    "Fcl_MTH_E": "ee",
    "Fcl_MTH_O": "oh",
    "Fcl_EYE_Close": "blink",
    "Fcl_EYE_Close_L": "blinkLeft",
    "Fcl_EYE_Close_R": "blinkRight",
    "Fcl_ALL_Joy": "happy",
    "Fcl_ALL_Angry": "angry",
    "Fcl_ALL_Sorrow": "sad",
    "Fcl_ALL_Fun": "relaxed",
    "Fcl_ALL_Surprised": "surprised",
}

# Where a preset's morph targets may move vertices, in the head frame the validator measures:
# y = (Y - head bone Y) / head height (0 at the head bone, 1 at the top of the head),
# x = X / head width (0 on the head axis, + on the avatar's left). (y_min, y_max) of the
# displacement-weighted centre of what moves.
REGIONS: dict[str, tuple[float, float]] = {
    **{p: (-0.15, 0.55) for p in VISEMES},  # the lower face: mouth and jaw
    **{p: (0.15, 0.95) for p in BLINKS},  # around the eyes
    **{p: (0.15, 0.95) for p in LOOKS},  # the eyes
    **{p: (-0.15, 0.95) for p in EMOTIONS},  # brows, eyes and mouth together
}
EYES_ABOVE_MOUTH = 0.12
"""Blink and gaze must move a part of the head at least this far (head heights) above what aa moves.
Why relative as well as the band above: rigs put the head joint anywhere from the chin to the mouth
and chibi heads are half eyes, so where the eyes sit in the head frame varies a lot (0.23 on a head
whose joint is at the mouth); that the eyes are above the mouth does not."""
BELOW_NECK = -0.25
"""No preset may move a vertex lower than this (head heights under the head bone): the neck and body stay."""
MIN_MOVE, MAX_MOVE = 0.003, 0.35
"""A bound preset must move some vertex at least MIN_MOVE head heights and none more than MAX_MOVE."""

__all__ = [
    "VISEMES",
    "BLINKS",
    "EMOTIONS",
    "LOOKS",
    "PRESETS",
    "ALL_PRESETS",
    "OVERRIDES",
    "ADDON_NAMES",
    "VROID_KEYS",
    "REGIONS",
    "EYES_ABOVE_MOUTH",
    "BELOW_NECK",
    "MIN_MOVE",
    "MAX_MOVE",
]
