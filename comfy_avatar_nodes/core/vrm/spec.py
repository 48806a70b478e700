"""The VRM 1.0 names the pack relies on, in ONE place: humanoid bones, their required
hierarchy, meta enums and the licence URL (https://github.com/vrm-c/vrm-specification,
VRMC_vrm-1.0).

Plain literals, no imports at all, on purpose: besides core/ (validation, the bone-map
checks, UniRig's heuristic map, the VrmMeta widgets), the scripts in blender_cli/ read this
very file inside Blender (bpy + stdlib, no access to the pack's dependencies), by path
through blender_cli/_pack.py. Add an import here and those scripts break.
"""

REQUIRED_BONES = (
    "hips",
    "spine",
    "head",
    "leftUpperLeg",
    "leftLowerLeg",
    "leftFoot",
    "rightUpperLeg",
    "rightLowerLeg",
    "rightFoot",
    "leftUpperArm",
    "leftLowerArm",
    "leftHand",
    "rightUpperArm",
    "rightLowerArm",
    "rightHand",
)
"""The 15 bones every VRM 1.0 humanoid must have."""

_FINGERS = (
    ("Thumb", ("Metacarpal", "Proximal", "Distal")),
    ("Index", ("Proximal", "Intermediate", "Distal")),
    ("Middle", ("Proximal", "Intermediate", "Distal")),
    ("Ring", ("Proximal", "Intermediate", "Distal")),
    ("Little", ("Proximal", "Intermediate", "Distal")),
)

OPTIONAL_BONES = (
    "chest",
    "upperChest",
    "neck",
    "leftEye",
    "rightEye",
    "jaw",
    "leftShoulder",
    "rightShoulder",
    "leftToes",
    "rightToes",
    *(f"{side}{finger}{seg}" for side in ("left", "right") for finger, segs in _FINGERS for seg in segs),
)

HUMAN_BONES = (*REQUIRED_BONES, *OPTIONAL_BONES)
"""Every VRM 1.0 humanoid bone name, required ones first (the order maps are written in)."""

REQUIRED_ANCESTOR = {
    "spine": "hips",
    "head": "spine",
    "leftUpperLeg": "hips",
    "leftLowerLeg": "leftUpperLeg",
    "leftFoot": "leftLowerLeg",
    "rightUpperLeg": "hips",
    "rightLowerLeg": "rightUpperLeg",
    "rightFoot": "rightLowerLeg",
    "leftUpperArm": "spine",
    "leftLowerArm": "leftUpperArm",
    "leftHand": "leftLowerArm",
    "rightUpperArm": "spine",
    "rightLowerArm": "rightUpperArm",
    "rightHand": "rightLowerArm",
}
"""child -> the required bone that must be one of its ancestors (the VRM 1.0 humanoid hierarchy)."""

META_ENUMS = {
    "avatar_permission": ("onlyAuthor", "onlySeparatelyLicensedPerson", "everyone"),
    "commercial_usage": ("personalNonProfit", "personalProfit", "corporation"),
    "credit_notation": ("required", "unnecessary"),
    "modification": ("prohibited", "allowModification", "allowModificationRedistribution"),
}
"""VRMC_vrm.meta enums by the snake_case name the pack and the Blender add-on use; the first
value is the default. In the file they are camelCase (see META_JSON_NAMES)."""

META_JSON_NAMES = {
    "avatar_permission": "avatarPermission",
    "commercial_usage": "commercialUsage",
    "credit_notation": "creditNotation",
    "modification": "modification",
}

META_FLAGS = (
    "allow_excessively_violent_usage",
    "allow_excessively_sexual_usage",
    "allow_political_or_religious_usage",
    "allow_antisocial_or_hate_usage",
    "allow_redistribution",
)
"""VRMC_vrm.meta booleans (all default False)."""

VRM_LICENSE_URL = "https://vrm.dev/licenses/1.0/"
"""The VRM Public License 1.0: the add-on always writes it as licenseUrl, and three-vrm accepts
only it by default. Any other licence goes into other_license_url."""
