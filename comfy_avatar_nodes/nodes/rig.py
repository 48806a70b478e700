"""VRM 1.0 export with the VRM add-on, one Blender launch each: a bare mesh with the CPU template rig, or a
mesh that is already rigged (UniRig) with its humanoid bone map."""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from ..core.config import load_settings
from ..core.vrm.spec import META_ENUMS
from ._common import MESH_KINDS, AvatarVRM, model_file, output_path, ui_files
from ._mesh_inputs import mesh_input, to_asset
from ._metadata import with_workflow


def _face_inputs() -> list:
    """The face-stage widgets both export nodes share (optional: older workflows run unchanged)."""
    return [
        io.Boolean.Input(
            "expressions",
            default=True,
            optional=True,
            tooltip="Find the face and give the avatar the 17 VRM expressions (visemes, blink, emotions, "
            "gaze) as morph targets; existing ARKit/VRoid shape keys are used first.",
        ),
        io.Combo.Input(
            "material",
            options=["mtoon", "pbr"],
            default="mtoon",
            optional=True,
            tooltip="mtoon: VRM's toon shader from the base colour (shade derived, no outline); pbr: keep glTF PBR.",
        ),
        io.String.Input(
            "face_landmarks",
            default="",
            optional=True,
            tooltip="Override where the face finder put a landmark, as fractions of the head box (x from the "
            "picture's left, y from the top of the head): 'left_eye=0.64,0.55; mouth=0.5,0.8'. Names: "
            "left_eye, right_eye, mouth, left_brow, right_brow (the avatar's own left and right).",
        ),
    ]


def _face(settings, expressions: bool, material: str, face_landmarks: str):
    from ..core.vrm.face_inputs import FaceOptions

    return FaceOptions.from_inputs(settings.face, expressions=expressions, material=material, landmarks=face_landmarks)


def _meta_inputs() -> list:
    """The VRM meta widgets both export nodes share (same names, defaults and order)."""
    return [
        io.String.Input("name", default="Avatar", tooltip="VRM meta name shown in VRM apps."),
        io.String.Input("version", default="1.0", tooltip="VRM meta version of this model."),
        io.String.Input("authors", default="comfy-avatar", tooltip="Authors, comma separated (at least one)."),
        io.Combo.Input(
            "avatar_permission",
            options=list(META_ENUMS["avatar_permission"]),
            default="onlyAuthor",
            tooltip="Who may perform as this avatar (VRM 1.0 meta).",
        ),
        io.Combo.Input(
            "commercial_usage",
            options=list(META_ENUMS["commercial_usage"]),
            default="personalNonProfit",
            tooltip="Allowed commercial use (VRM 1.0 meta).",
        ),
        io.Combo.Input(
            "modification",
            options=list(META_ENUMS["modification"]),
            default="prohibited",
            tooltip="Whether others may modify or redistribute (VRM 1.0 meta).",
        ),
    ]


def _meta(name: str, version: str, authors: str, avatar_permission: str, commercial_usage: str, modification: str):
    from ..core.vrm.meta import VrmMeta

    return VrmMeta(
        name=name,
        version=version,
        authors=[a.strip() for a in authors.split(",") if a.strip()],
        avatar_permission=avatar_permission,
        commercial_usage=commercial_usage,
        modification=modification,
    )


class AvatarRigVRMCPU(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarRigVRMCPU",
            display_name="Rig + Export VRM (CPU template rig)",
            category="avatar/rig",
            description=(
                "Fits a VRM humanoid template skeleton to the mesh's proportions, skins it with Blender's "
                "automatic weights and exports VRM 1.0 with the VRM add-on, all in one headless Blender run. "
                "First checks that the mesh is a standing humanoid seen from the front (a chair, a building, an "
                "animal or a profile is refused with the reason), and brings it within the triangle budget before "
                "weighting. Takes our mesh handle, ComfyUI's own MESH or 3D file, or a .glb/.obj/.fbx path. "
                "A template fit, not a learned rig: use UniRig on a GPU for unusual body shapes."
            ),
            is_output_node=True,
            inputs=[
                mesh_input(
                    "mesh",
                    "Mesh from an image-to-mesh node, ComfyUI's own MESH (e.g. VoxelToMesh) or 3D file, "
                    "or a .glb/.obj/.fbx path (Load3D's mesh_path).",
                ),
                *_meta_inputs(),
                io.Float.Input(
                    "remesh_voxel",
                    default=0.0,
                    min=0.0,
                    max=0.2,
                    step=0.001,
                    tooltip="Voxel size in metres for the watertight remesh before skinning; 0 = automatic.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/avatar",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.vrm).",
                ),
                io.Int.Input(
                    "max_triangles",
                    default=30000,
                    min=0,
                    max=2_000_000,
                    step=1000,
                    optional=True,
                    tooltip="Triangle budget of the VRM (web viewers want tens of thousands); the mesh is "
                    "decimated, or remeshed when far over, before weighting, texture kept. 0 = no limit.",
                ),
                io.Combo.Input(
                    "humanoid_check",
                    options=["refuse", "warn", "off"],
                    default="refuse",
                    optional=True,
                    tooltip="Check that the mesh is a standing humanoid seen from the front before rigging: "
                    "refuse stops with the reason, warn only says so, off skips the check.",
                ),
                *_face_inputs(),
            ],
            outputs=[
                AvatarVRM.Output("vrm", tooltip="File handle of the VRM 1.0 avatar."),
                io.String.Output("model_file", tooltip="VRM path relative to the output folder, for Preview3D."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the VRM, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        mesh,
        name: str,
        version: str,
        authors: str,
        avatar_permission: str,
        commercial_usage: str,
        modification: str,
        remesh_voxel: float,
        filename_prefix: str,
        max_triangles: int = 30000,
        humanoid_check: str = "refuse",
        expressions: bool = True,
        material: str = "mtoon",
        face_landmarks: str = "",
    ) -> io.NodeOutput:
        from ..core.rig.cpu import budget_text, rig_to_vrm
        from ..core.vrm.face_inputs import face_text

        settings = load_settings()
        src = to_asset(mesh, "mesh", settings).require(MESH_KINDS, "mesh")
        meta = _meta(name, version, authors, avatar_permission, commercial_usage, modification)
        out = output_path(filename_prefix, "vrm", settings)
        vrm = with_workflow(
            await rig_to_vrm(
                Path(src.path),
                out,
                meta,
                remesh_voxel=remesh_voxel,
                settings=settings,
                max_triangles=max_triangles,
                humanoid_check=humanoid_check,
                face=_face(settings, expressions, material, face_landmarks),
            ),
            cls.hidden,
        )
        text = "; ".join(t for t in (budget_text(vrm.meta), face_text(vrm.meta)) if t)
        return io.NodeOutput(vrm.to_dict(), model_file(out), ui=ui_files(out, text=text))


class AvatarExportVRMRigged(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarExportVRMRigged",
            display_name="Export VRM (rigged mesh)",
            category="avatar/vrm",
            description=(
                "Turns a mesh that already has a skeleton and skin weights (Auto-rig (UniRig)'s GLB/FBX, or any rigged "
                "GLB/FBX) into a VRM 1.0 avatar in one headless Blender run: keeps the weights, names the humanoid bones "
                "from the bone map (UniRig's map is a heuristic guess: check it), turns the figure to face +Z, scales it "
                "to the target height, stands it on Y=0 and makes the VRM T-pose its rest pose."
            ),
            is_output_node=True,
            inputs=[
                mesh_input(
                    "rigged",
                    "Rigged mesh: the 'rigged' output of Auto-rig (UniRig), a rigged 3D file (File3D) "
                    "or the path of a rigged .glb/.fbx.",
                ),
                io.String.Input(
                    "humanoid_map",
                    default="",
                    multiline=True,
                    tooltip='JSON {"hips": "bone_3", "leftUpperArm": "bone_17", ...}: VRM humanoid bone -> bone '
                    "name in the rigged file (UniRig's humanoid map format works too). Empty: the map "
                    "that came with the rigged handle.",
                ),
                *_meta_inputs(),
                io.Float.Input(
                    "target_height_m",
                    default=1.7,
                    min=0.0,
                    max=3.0,
                    step=0.01,
                    tooltip="Height in metres to scale the avatar to (TRELLIS/UniRig output fits a unit cube); "
                    "0 keeps the file's size.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="avatar/avatar",
                    tooltip="Output name under ComfyUI's output folder (comfy-avatar/<prefix>_00001.vrm).",
                ),
                *_face_inputs(),
            ],
            outputs=[
                AvatarVRM.Output("vrm", tooltip="File handle of the VRM 1.0 avatar."),
                io.String.Output("model_file", tooltip="VRM path relative to the output folder, for Preview3D."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],  # the workflow goes into the VRM, like SaveGLB
        )

    @classmethod
    async def execute(
        cls,
        rigged,
        humanoid_map: str,
        name: str,
        version: str,
        authors: str,
        avatar_permission: str,
        commercial_usage: str,
        modification: str,
        target_height_m: float,
        filename_prefix: str,
        expressions: bool = True,
        material: str = "mtoon",
        face_landmarks: str = "",
    ) -> io.NodeOutput:
        from ..core.errors import AvatarError
        from ..core.vrm.export import rigged_to_vrm
        from ..core.vrm.face_inputs import face_text

        settings = load_settings()
        src = to_asset(rigged, "rigged", settings).require(MESH_KINDS, "rigged")
        mapping = humanoid_map.strip() or src.meta.get("humanoid_map")
        if not mapping:
            raise AvatarError(
                "humanoid_map",
                "is empty and the rigged handle carries no humanoid map",
                'paste a JSON map {"hips": "<bone>", ...} or connect Auto-rig (UniRig)',
            )
        meta = _meta(name, version, authors, avatar_permission, commercial_usage, modification)
        out = output_path(filename_prefix, "vrm", settings)
        vrm = with_workflow(
            await rigged_to_vrm(
                Path(src.path),
                mapping,
                out,
                meta,
                target_height_m=target_height_m,
                settings=settings,
                face=_face(settings, expressions, material, face_landmarks),
            ),
            cls.hidden,
        )
        m = vrm.meta
        text = (
            f"{len(m['humanoid'])} humanoid bones of {m['bone_count']}, {m['dimensions_m']['y']:.2f} m tall, "
            f"{m['vertices']} vertices ({m['unweighted_before_fix']} had no weight)"
        )
        if m.get("dropped_optional_bones"):
            text += f"; left out: {', '.join(m['dropped_optional_bones'])}"
        if (m.get("budget") or {}).get("summary"):  # the triangle budget (config rig.max_triangles)
            text += f"; {m['budget']['summary']}"
        text += f"; {face_text(m)}"
        return io.NodeOutput(vrm.to_dict(), model_file(out), ui=ui_files(out, text=text))


NODES = [AvatarRigVRMCPU, AvatarExportVRMRigged]
