"""Publish a finished asset to S3-compatible storage with rclone (checksummed, idempotent)."""

from __future__ import annotations

import asyncio

from comfy_api.latest import io, ui

from ..core.assets import Asset
from ..core.config import load_settings
from ._common import MESH_KINDS, AvatarMesh, AvatarVRM

KEY_MODES = ["content", "stable"]


class AvatarPromoteS3(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AvatarPromoteS3",
            display_name="Promote to S3 (rclone)",
            category="avatar/publish",
            description=(
                "Uploads the asset file to an S3-compatible bucket with rclone and returns its URL. The sha256 is "
                "stored as object metadata: promoting the same bytes again uploads nothing and returns the same "
                "URL. Credentials never go in this node: define the remote with RCLONE_CONFIG_<NAME>_* "
                "environment variables or in the rclone.conf named by storage.rclone_config."
            ),
            is_output_node=True,
            inputs=[
                io.MultiType.Input(
                    "asset",
                    types=[AvatarVRM, AvatarMesh],
                    tooltip="VRM or mesh handle to publish (output of the rig/export or a mesh node).",
                ),
                io.String.Input(
                    "remote",
                    default="s3",
                    tooltip="Name of an rclone remote defined in the environment (RCLONE_CONFIG_<NAME>_TYPE=s3 ...) or rclone.conf. Never a key.",
                ),
                io.String.Input(
                    "bucket", default="avatars", tooltip="Bucket name (3-63 lower-case letters, digits, dots, hyphens)."
                ),
                io.String.Input(
                    "key_prefix",
                    default="comfy-avatar",
                    tooltip="Folder inside the bucket, e.g. team/alice (letters, digits, !_.*'()- and /).",
                ),
                io.Combo.Input(
                    "key_mode",
                    options=KEY_MODES,
                    default="content",
                    tooltip="content: <prefix>/<sha256[:16]>/<file> (new URL per content, never overwritten); stable: <prefix>/<file> (same URL, latest content replaces the old).",
                ),
                io.String.Input(
                    "public_base_url",
                    default="",
                    tooltip="Public URL of the bucket root (e.g. https://cdn.example.com/avatars); empty: storage.public_base_url, else an s3:// URL.",
                ),
            ],
            outputs=[
                io.String.Output(
                    "url", tooltip="URL of the object (public URL when a base URL is set, else s3://bucket/key)."
                ),
                io.String.Output("key", tooltip="Object key inside the bucket."),
            ],
        )

    @classmethod
    async def execute(
        cls, asset: dict, remote: str, bucket: str, key_prefix: str, key_mode: str, public_base_url: str
    ) -> io.NodeOutput:
        from ..core.publish.promote import promote

        src = Asset.from_dict(asset).require(("vrm", *MESH_KINDS), "asset")
        res = await asyncio.to_thread(
            promote,
            src.path,
            remote,
            bucket,
            key_prefix,
            key_mode=key_mode,
            public_base_url=public_base_url,
            expected_sha256=src.sha256 or None,
            settings=load_settings(),
        )
        state = "uploaded" if res.uploaded else "already there, nothing uploaded"
        if res.replaced:
            state = "uploaded, replaced different content at the same key"
        text = f"{res.url}\n{state}; {res.size} bytes; sha256 {res.sha256}; {res.duration_s:.2f} s"
        return io.NodeOutput(res.url, res.key, ui=ui.PreviewText(text))


NODES = [AvatarPromoteS3]
