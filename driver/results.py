"""What a finished prompt gave back: its result and its output files.

Plain data, no I/O and no driver imports, at the bottom of the layers: the client
builds these, errors carry them (JobFailed.result), the batch runner and the CLI
read them. Kept apart from client.py so that reading a result never needs the
websocket or HTTP stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutputFile:
    """One file a node reported in its UI output (SaveImage 'images', etc.)."""

    node_id: str
    key: str
    filename: str
    subfolder: str = ""
    type: str = "output"

    def to_dict(self) -> dict[str, str]:
        return {
            "node_id": self.node_id,
            "key": self.key,
            "filename": self.filename,
            "subfolder": self.subfolder,
            "type": self.type,
        }


@dataclass(frozen=True)
class Downloaded:
    """One output file written locally: where, its path relative to the output folder,
    and the sha256 and size of the bytes written (hashed while they were written)."""

    output: OutputFile
    path: Path
    rel: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Uploaded:
    name: str
    subfolder: str = ""
    type: str = "input"

    @property
    def ref(self) -> str:
        """The value a LoadImage-style input takes: 'subfolder/name' or 'name'."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


@dataclass
class JobResult:
    prompt_id: str
    status: str  # "success" (failures raise JobFailed)
    outputs: list[OutputFile]
    timings: dict[str, float]  # node id -> seconds seen by the client
    messages: list[tuple[str, dict[str, Any]]]  # ComfyUI status messages
    ui_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    node_types: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    server: str = ""
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "status": self.status,
            "server": self.server,
            "outputs": [o.to_dict() for o in self.outputs],
            "timings": self.timings,
            "cached": self.cached,
            "duration_s": self.duration_s,
            "error": self.error,
        }


def collect_outputs(ui_outputs: dict[str, Any]) -> list[OutputFile]:
    """Every list entry that is a dict with filename/subfolder/type, in node order."""
    files: list[OutputFile] = []
    for node_id, ui in ui_outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if not isinstance(items, list):
                continue
            for it in items:
                if isinstance(it, dict) and isinstance(it.get("filename"), str) and "type" in it:
                    files.append(
                        OutputFile(
                            str(node_id),
                            str(key),
                            it["filename"],
                            str(it.get("subfolder") or ""),
                            str(it.get("type") or "output"),
                        )
                    )
    return files
