"""Driver errors and the CLI's exit codes: the bottom layer, imported by everything.

Each error names what went wrong and the fix, like the pack's AvatarError:
``str(err)`` reads "<what>: <problem>. Fix: <fix>". ``transient`` tells a retrying
caller (batch runner) whether trying again later can help: an unreachable server or
a 5xx can, a validation error or a node exception cannot.

The exit codes live here, next to the errors they are mapped from, so the batch
runner's summary and the CLI give the same number for the same failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .results import JobResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

LOCAL_FIX = (
    "start ComfyUI there (python main.py --listen 127.0.0.1 --port PORT), pass --server URL "
    "for a running one, or --local to start one from COMFYUI_DIR"
)


class DriverError(Exception):
    transient = False

    def __init__(self, what: str, problem: str, fix: str = "", *, detail: str = "") -> None:
        self.what, self.problem, self.fix, self.detail = what, problem, fix, detail
        msg = f"{what}: {problem}"
        if fix:
            msg += f". Fix: {fix}"
        if detail:
            msg += f"\n{detail}"
        super().__init__(msg)


class ServerUnreachable(DriverError):
    """Connection refused / DNS failure / no answer in time."""

    transient = True

    def __init__(self, url: str, problem: str = "cannot connect (connection refused)", fix: str = LOCAL_FIX) -> None:
        self.url = url
        super().__init__(f"ComfyUI server {url}", problem, fix)


class ServerError(DriverError):
    """An HTTP status the driver did not expect; 5xx are transient."""

    def __init__(self, url: str, status: int, body: str) -> None:
        self.url, self.status_code, self.body = url, status, body
        self.transient = status >= 500
        fix = (
            "see ComfyUI's log for the cause"
            if status >= 500
            else "check the request (driver bug or incompatible ComfyUI)"
        )
        super().__init__(f"ComfyUI {url}", f"HTTP {status}: {body[:500].strip()}", fix)


@dataclass(frozen=True)
class NodeError:
    """One validation error of one node input, as ComfyUI reports it in node_errors."""

    node_id: str
    class_type: str
    input_name: str
    type: str
    message: str
    details: str = ""
    received_value: Any = None

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.class_type})"
        if self.input_name:
            where += f" input '{self.input_name}'"
        msg = self.message
        if self.details and self.details not in (self.input_name, msg):
            msg += f": {self.details}"
        if self.received_value is not None:
            msg += f" (got {self.received_value!r})"
        return f"{where}: {msg} [{self.type}]"


class PromptRejected(DriverError):
    """POST /prompt answered 400: the prompt failed validation; retrying cannot help."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        self.error = error if isinstance(error, dict) else {"message": str(error)}
        self.raw_node_errors = node_errors if isinstance(node_errors, dict) else {}
        self.node_errors = parse_node_errors(self.raw_node_errors)
        self.type = str(self.error.get("type", ""))
        head = str(self.error.get("message") or "invalid prompt")
        details = str(self.error.get("details") or "")
        if details and not self.node_errors:
            head += f" ({details})"
        fix = (
            "install the custom node pack that provides it, or remove the node from the workflow"
            if self.type == "invalid_prompt"
            else "correct the listed inputs in the workflow (or pass them with --input)"
        )
        lines = "\n".join(f"  {e}" for e in self.node_errors)
        super().__init__("ComfyUI rejected the prompt", head, fix, detail=lines)


def parse_node_errors(node_errors: dict[str, Any]) -> list[NodeError]:
    out: list[NodeError] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        class_type = str(entry.get("class_type", "?"))
        for err in entry.get("errors") or []:
            if not isinstance(err, dict):
                continue
            raw_extra = err.get("extra_info")
            extra: dict = raw_extra if isinstance(raw_extra, dict) else {}
            out.append(
                NodeError(
                    node_id=str(node_id),
                    class_type=class_type,
                    input_name=str(extra.get("input_name") or ""),
                    type=str(err.get("type", "")),
                    message=str(err.get("message", "")),
                    details=str(err.get("details") or ""),
                    received_value=extra.get("received_value"),
                )
            )
    return out


class JobFailed(DriverError):
    """The prompt ran and a node raised (execution_error). ``result`` has what finished."""

    def __init__(self, result: JobResult, error: dict[str, Any], *, interrupted: bool = False) -> None:
        self.result = result
        self.prompt_id = result.prompt_id
        self.node_id = str(error.get("node_id", "?"))
        self.node_type = str(error.get("node_type", "?"))
        self.exception_type = str(error.get("exception_type", ""))
        self.exception_message = str(error.get("exception_message", "")).strip()
        tb = error.get("traceback")
        self.traceback = "".join(tb) if isinstance(tb, list) else str(tb or "")
        if interrupted:
            problem, fix = "interrupted", "run it again (someone or a timeout interrupted it)"
        else:
            problem = (
                f"{self.exception_type}: {self.exception_message}" if self.exception_type else self.exception_message
            )
            # the generic hint only when the node's own message has none (the pack's errors carry a "Fix:")
            fix = (
                ""
                if "Fix: " in self.exception_message
                else "fix the node's input named in the message; ComfyUI's log has the full traceback"
            )
        super().__init__(f"prompt {self.prompt_id} node {self.node_id} ({self.node_type})", problem, fix)


class JobInterrupted(JobFailed):
    def __init__(self, result: JobResult, info: dict[str, Any]) -> None:
        super().__init__(result, info, interrupted=True)


class JobTimeout(DriverError):
    def __init__(self, prompt_id: str, timeout_s: float, where: str) -> None:
        self.prompt_id, self.timeout_s = prompt_id, timeout_s
        super().__init__(
            f"prompt {prompt_id}",
            f"not finished after {timeout_s:g} s ({where})",
            "raise --timeout, or check ComfyUI's log for a stuck node",
        )


class JobLost(DriverError):
    """The prompt is neither queued, running nor in /history (server restarted)."""

    transient = True

    def __init__(self, prompt_id: str, url: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(
            f"prompt {prompt_id}",
            f"vanished from {url} (not queued, running or in history; the server probably restarted)",
            "submit it again",
        )


class UsageError(DriverError):
    """Bad arguments, an unreadable workflow or input file: exit code 2."""


class LocalStartError(DriverError):
    """The --local ComfyUI did not come up: exit code 3 (like an unreachable server)."""


def exit_code_for(err: BaseException) -> int:
    """The CLI exit code for an error that ended a command."""
    if isinstance(err, UsageError):
        return EXIT_USAGE
    if isinstance(err, (ServerUnreachable, LocalStartError)):
        return EXIT_UNREACHABLE
    return EXIT_FAILED
