"""The one progress reporter of the node layer, over ComfyUI's own progress API.

ComfyUI 0.3.64 and 0.8.0 both have the V3 ``ComfyAPISync().execution.set_progress``; a
server without it gets ``comfy.utils.ProgressBar``; outside ComfyUI nothing is shown.
The node id is taken when the reporter is made (inside the node's execute): TRELLIS and
UniRig report from a worker's reader thread, where ComfyUI's executing context is unset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("comfy_avatar.nodes")


class NodeProgress:
    """Reports ``value`` of ``total`` steps for the node that is executing now."""

    def __init__(self, total: float) -> None:
        self.total = float(total) or 1.0
        self._thread = threading.get_ident()
        self._report = _backend(_executing_node_id())

    def set(self, value: float) -> None:
        """Show ``value``/total on the node. Like ComfyUI's ProgressBar, a call on the node's own
        thread also stops the node when the user pressed Cancel (the next step never starts)."""
        if self._report is None:
            return
        try:
            self._report(max(0.0, min(float(value), self.total)), self.total)
        except Exception:  # noqa: BLE001 - progress is cosmetic: it must never fail the job
            log.debug("progress report failed", exc_info=True)
        if threading.get_ident() == self._thread:
            # only here: the check clears ComfyUI's interrupt flag, and a worker thread would swallow it
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()

    def fraction(self, fraction: float, message: str = "") -> None:
        """The ``(fraction, message)`` callback core's model workers call (0..1 of the job)."""
        self.set(float(fraction) * self.total)


def _executing_node_id() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # a ComfyUI older than the executing context: ProgressBar finds the node itself
        return None
    ctx = get_executing_context()
    return ctx.node_id if ctx is not None else None


def _backend(node_id: str | None) -> Callable[[float, float], None] | None:
    """set_progress(value, max) for ``node_id``: the V3 API where the server has it, else ProgressBar."""
    try:
        from comfy_api.latest import ComfyAPISync

        execution = ComfyAPISync().execution
        if node_id is None:
            return None  # not inside a running node (a direct call, a test): nothing to show
        return lambda value, total: execution.set_progress(value, total, node_id=node_id)
    except (ImportError, AttributeError):
        pass
    try:
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(100, node_id=node_id)
    return lambda value, total: bar.update_absolute(value, total)
