"""Errors a user can act on: each names the input that was wrong and the fix."""
from __future__ import annotations


class AvatarError(Exception):
    """A failure caused by an input or the environment, with the fix spelled out.

    ``str(err)`` reads: "<what>: <problem>. Fix: <fix>" so ComfyUI's error panel,
    the driver's exit message and logs all show the same actionable text.
    """

    def __init__(self, what: str, problem: str, fix: str = "", *, detail: str = "") -> None:
        self.what = what
        self.problem = problem
        self.fix = fix
        self.detail = detail
        msg = f"{what}: {problem}"
        if fix:
            msg += f". Fix: {fix}"
        if detail:
            msg += f"\n{detail}"
        super().__init__(msg)


class ConfigError(AvatarError):
    """Configuration file or environment variable is wrong."""


class BlenderError(AvatarError):
    """The Blender runtime is missing, crashed, timed out or the script failed."""
