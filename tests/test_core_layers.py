"""core/ is layered by stage: no cycles between its stage folders either (not only between
modules), core never imports ComfyUI or nodes/, and only nodes/ imports comfy_api.

Uses the AST walker of test_import_graph.py, so every kind of import counts (lazy ones too).
"""

from __future__ import annotations

from test_import_graph import find_cycles, import_graph, imports_of, package_modules

CORE = "comfy_avatar_nodes.core"
COMFY = ("comfy_api", "comfy_execution", "comfy", "folder_paths", "comfy_avatar_nodes.nodes")


def _stage(module: str) -> str:
    """comfy_avatar_nodes.core.vrm.spec -> core.vrm; a top-level helper stays itself (core.config)."""
    parts = module.split(".")
    return ".".join(parts[1:3]) if len(parts) > 2 else "core"


def test_no_cycles_between_stage_folders():
    folded: dict[str, dict[str, list[int]]] = {}
    for module, deps in import_graph(CORE).items():
        edges = folded.setdefault(_stage(module), {})
        for dep, lines in deps.items():
            if _stage(dep) != _stage(module):
                edges.setdefault(_stage(dep), []).extend(lines)
    for deps in list(folded.values()):
        for dep in deps:
            folded.setdefault(dep, {})
    cycles = find_cycles(folded)
    assert not cycles, (
        "stage folders of core/ import each other (one of them is in the wrong place):\n  " + "\n  ".join(cycles)
    )


def test_core_never_imports_comfyui_or_nodes():
    hits = [
        f"{path.name}:{line} imports {names[0]}"
        for module, path in package_modules(CORE).items()
        for names, line in imports_of(module, path)
        if any(n == c or n.startswith(c + ".") for n in names for c in COMFY)
    ]
    assert not hits, "core/ must stay plain Python:\n  " + "\n  ".join(hits)


def test_only_nodes_imports_comfy_api():
    hits = [
        f"{module}:{line}"
        for module, path in package_modules("comfy_avatar_nodes").items()
        if not module.startswith("comfy_avatar_nodes.nodes")
        for names, line in imports_of(module, path)
        if any(n.split(".")[0] == "comfy_api" for n in names)
    ]
    assert not hits, "comfy_api imported outside nodes/: " + ", ".join(hits)
