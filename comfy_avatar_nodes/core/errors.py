"""Errors a user can act on: each names the input that was wrong and the fix."""

from __future__ import annotations


class AvatarError(Exception):
    """A failure caused by an input or the environment, with the fix spelled out.

    ``str(err)`` reads: "<what>: <problem>. Fix: <fix>" so ComfyUI's error panel,
    the driver's exit message and logs all show the same actionable text.

    The class and every subclass report ``__module__ == "builtins"``: ComfyUI names a failed
    node's exception by ``module + "." + qualname`` unless the module is builtins, and it
    imports this pack under its folder path, so users read
    "/tmp/x/custom_nodes/comfy-avatar.comfy_avatar_nodes.core.errors.ConfigError" instead of
    "ConfigError". Tracebacks print the short name too; isinstance and except are unaffected.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.__module__ = "builtins"

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


AvatarError.__module__ = "builtins"  # see the class docstring


class ConfigError(AvatarError):
    """Configuration file or environment variable is wrong."""


class BlenderError(AvatarError):
    """The Blender runtime is missing, crashed, timed out or the script failed."""
