"""TRELLIS with several views: the request carries every picture and the worker calls TRELLIS's multi-image
mode (run_multi_image) with the node's mode; one picture still goes to run(). No GPU here: the worker's
request handler runs against a stand-in pipeline that records its calls (the real model call is the only
part not run), and core's request is checked for the pictures it writes."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "comfy_avatar_nodes" / "workers"))

import trellis_worker as tw  # noqa: E402

from comfy_avatar_nodes.core.errors import AvatarError  # noqa: E402
from comfy_avatar_nodes.core.mesh.trellis import TrellisParams  # noqa: E402


class _Pipeline:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict]] = []

    def run(self, img, **kw):
        self.calls.append(("run", 1, kw))
        return {"gaussian": [object()], "mesh": [object()]}

    def run_multi_image(self, imgs, **kw):
        self.calls.append(("run_multi_image", len(imgs), kw))
        return {"gaussian": [object()], "mesh": [object()]}


class _Glb:
    vertices = np.zeros((3, 3))
    faces = np.zeros((1, 3))

    def export(self, path: str) -> None:
        Path(path).write_bytes(b"glTF" + b"\0" * 16)


class _Req:
    def progress(self, fraction: float, text: str) -> None:
        pass


@pytest.fixture
def worker(monkeypatch):
    fake_cuda = types.SimpleNamespace(
        reset_peak_memory_stats=lambda: None, max_memory_allocated=lambda: 0, empty_cache=lambda: None
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    w = tw.TrellisWorker(types.SimpleNamespace(weights_dir="", repo_dir="", min_vram_gb=16, checkpoint_pins=""))
    w.pipeline = _Pipeline()
    w.postprocessing = types.SimpleNamespace(to_glb=lambda g, m, **kw: _Glb())
    return w


def _png(path: Path) -> Path:
    a = np.zeros((64, 64, 4), np.uint8)
    a[16:48, 24:40] = (200, 100, 50, 255)
    Image.fromarray(a, "RGBA").save(path)
    return path


def test_several_views_use_trellis_multi_image_mode(worker, tmp_path):
    views = [str(_png(tmp_path / f"{n}.png")) for n in ("front", "side", "back")]
    res = worker.image_to_mesh(
        {
            "image": views[0],
            "images": views,
            "output": str(tmp_path / "o.glb"),
            "multiview_mode": "multidiffusion",
            "seed": 7,
        },
        _Req(),
    )
    name, n, kw = worker.pipeline.calls[-1]
    assert (name, n, kw["mode"], kw["seed"]) == ("run_multi_image", 3, "multidiffusion", 7)
    assert res["views"] == 3 and (tmp_path / "o.glb").read_bytes()[:4] == b"glTF"


def test_one_view_uses_run(worker, tmp_path):
    front = str(_png(tmp_path / "front.png"))
    worker.image_to_mesh({"image": front, "output": str(tmp_path / "o.glb")}, _Req())
    assert worker.pipeline.calls[-1][0] == "run" and "mode" not in worker.pipeline.calls[-1][2]


def test_an_unreadable_view_is_named(worker, tmp_path):
    bad = tmp_path / "side.png"
    bad.write_text("not a picture")
    with pytest.raises(tw.WorkerFailure, match="cannot read .*side.png"):
        worker.image_to_mesh(
            {
                "image": str(_png(tmp_path / "f.png")),
                "images": [str(tmp_path / "f.png"), str(bad)],
                "output": str(tmp_path / "o.glb"),
            },
            _Req(),
        )


def test_the_mode_is_checked_before_any_worker():
    with pytest.raises(AvatarError, match="multiview_mode: 'average' is not a TRELLIS multi-image mode"):
        TrellisParams(multiview_mode="average").check()
