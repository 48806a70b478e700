"""VRM 1.0 meta (VRMC_vrm.meta) as the pack builds it: one validated dataclass that every
VRM-writing job (CPU rig, rigged mesh -> VRM) sends to its Blender script.

The allowed values come from spec.py, the list blender_cli/ checks against too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AvatarError
from .spec import META_ENUMS, VRM_LICENSE_URL


@dataclass
class VrmMeta:
    """VRM 1.0 meta (VRMC_vrm.meta); validated on construction."""

    name: str
    version: str = "1.0"
    authors: Sequence[str] = field(default_factory=lambda: ["comfy-avatar"])
    avatar_permission: str = "onlyAuthor"
    commercial_usage: str = "personalNonProfit"
    modification: str = "prohibited"
    credit_notation: str = "required"
    allow_redistribution: bool = False
    allow_excessively_violent_usage: bool = False
    allow_excessively_sexual_usage: bool = False
    allow_political_or_religious_usage: bool = False
    allow_antisocial_or_hate_usage: bool = False
    license_url: str = VRM_LICENSE_URL
    other_license_url: str = ""
    copyright_information: str = ""
    contact_information: str = ""
    third_party_licenses: str = ""

    def __post_init__(self) -> None:
        self.name = (self.name or "").strip()
        if not self.name:
            raise AvatarError("meta.name", "is empty", "give the avatar a name (shown in VRM apps)")
        if isinstance(self.authors, str):
            self.authors = [a.strip() for a in self.authors.split(",")]
        self.authors = [str(a).strip() for a in self.authors if str(a).strip()]
        if not self.authors:
            raise AvatarError("meta.authors", "no author given", "list at least one author (comma separated)")
        self.version = str(self.version or "").strip()
        for key, allowed in META_ENUMS.items():
            value = getattr(self, key)
            if value not in allowed:
                raise AvatarError(
                    f"meta.{key}", f"{value!r} is not a VRM 1.0 value", f"use one of {', '.join(allowed)}"
                )
        if self.license_url.rstrip("/") != VRM_LICENSE_URL.rstrip("/"):
            raise AvatarError(
                "meta.license_url",
                f"{self.license_url!r} is not supported",
                f"VRM 1.0 files name the VRM Public License ({VRM_LICENSE_URL}); put another "
                "licence's URL in other_license_url",
            )
        self.license_url = VRM_LICENSE_URL
        if self.other_license_url and not self.other_license_url.startswith(("http://", "https://")):
            raise AvatarError(
                "meta.other_license_url",
                f"{self.other_license_url!r} is not a URL",
                "give an http(s) URL or leave it empty",
            )

    def to_args(self) -> dict[str, Any]:
        d = asdict(self)
        d["authors"] = list(self.authors)
        return d
