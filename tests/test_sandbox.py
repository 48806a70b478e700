"""The sandbox for model-written Blender scripts: static check, runtime guards, limits, cleanup.

The hostile suite runs every attack twice: through the full sandbox, and with the static
check switched off so the runtime layer (audit hook, operator guard, restricted builtins,
rlimits, timeout, stripped environment) has to contain it on its own. Each mode prints
"contained N/M".
"""
from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from comfy_avatar_nodes.core.config import SandboxSettings
from comfy_avatar_nodes.core.executor.sandbox import SandboxRun, check_script, run_script, safe_env

from _agent_helpers import contains_bytes, files_under, validate_glb

SECRET = "sk-canary-5d1e0c7f2b9a4e11"
LEGIT = '''
import bpy, bmesh, math
from mathutils import Vector

bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0, 0, 0.45))
seat = bpy.context.active_object
seat.name = "Seat"
seat.scale = (0.45, 0.45, 0.05)
bpy.ops.object.transform_apply(scale=True)
bevel = seat.modifiers.new("Bevel", "BEVEL")
bevel.width = 0.01
wood = bpy.data.materials.new("Oak")
wood.diffuse_color = (0.55, 0.35, 0.18, 1.0)
seat.data.materials.append(wood)
for i, (x, y) in enumerate([(-0.2, -0.2), (0.2, -0.2), (-0.2, 0.2), (0.2, 0.2)]):
    bpy.ops.mesh.primitive_cylinder_add(radius=0.025, depth=0.4, location=(x, y, 0.2))
    leg = bpy.context.active_object
    leg.name = f"Leg{i}"
    leg.data.materials.append(wood)
bm = bmesh.new()
bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=0.05)
mesh = bpy.data.meshes.new("Knob")
bm.to_mesh(mesh)
bm.free()
knob = bpy.data.objects.new("Knob", mesh)
knob.location = Vector((0, 0, 0.55))
bpy.context.scene.collection.objects.link(knob)
'''


# ---------------------------------------------------------------- static check (no Blender)

@pytest.mark.parametrize("src, line, needle", [
    ("import bpy\nimport os\n", 2, "import of 'os'"),
    ("import bpy\nfrom subprocess import run\n", 2, "'subprocess'"),
    ("x = 1\n\n__import__('os').system('id')\n", 3, "'__import__'"),
    ("exec('import os')\n", 1, "'exec'"),
    ("y = eval('1+1')\n", 1, "'eval'"),
    ("f = open('/etc/passwd')\n", 1, "'open'"),
    ("import bpy\nc = ().__class__.__base__.__subclasses__()\n", 2, "'__subclasses__'"),
    ("g = (lambda: 0).__globals__\n", 1, "'__globals__'"),
    ("import math\nb = math.__builtins__\n", 2, "'__builtins__'"),
    ("import math\nf = getattr(math, '__loader__')\n", 2, "getattr() with attribute '__loader__'"),
    ("import math\nn = 'sy' + 'stem'\nf = getattr(math, n)\n", 3, "computed attribute name"),
    ("import random\nos = random._os\n", 2, "'_os'"),
    ("import bpy\nbpy.ops.wm.save_as_mainfile(filepath='/tmp/x.blend')\n", 2, "save_as_mainfile"),
    ("import bpy\nbpy.data.texts.load('/proc/1/environ')\n", 2, "'load'"),
    ("import bpy\nbpy.app.handlers.depsgraph_update_post.append(print)\n", 2, "'handlers'"),
    ("import bpy\nimport importlib\n", 2, "'importlib'"),
    ("import ctypes\n", 1, "'ctypes'"),
    ("import socket\n", 1, "'socket'"),
    ("def f(:\n  pass\n", 1, "syntax error"),
])
def test_static_check_refuses_with_line_number(src, line, needle):
    problems = check_script(src)
    assert problems, f"not refused: {src!r}"
    assert any(ln == line and needle in msg for ln, msg in problems), problems


def test_static_check_accepts_ordinary_bpy_scripts():
    assert check_script(LEGIT) == []
    assert check_script("import bpy\nobj = bpy.context.active_object\nok = hasattr(obj, 'data')\n"
                        "if __name__ == '__main__':\n    print(getattr(obj, 'name', ''))\n") == []


def test_safe_env_keeps_no_secrets(tmp_path):
    base = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "OPENAI_API_KEY": SECRET,
            "COMFY_AVATAR_LLM_API_KEY": SECRET, "AWS_ACCESS_KEY_ID": "AKIA", "MY_TOKEN": SECRET,
            "DB_PASSWORD": SECRET, "GITHUB_TOKEN": SECRET, "RANDOM_THING": SECRET}
    env = safe_env(tmp_path, base)
    assert SECRET not in "".join(env.values()) and "AKIA" not in env.values()
    assert env["PATH"] == "/usr/bin" and env["HOME"].startswith(str(tmp_path))
    assert env["TMPDIR"].startswith(str(tmp_path))


# ---------------------------------------------------------------- real Blender

def run(src: str, out: Path, **kw) -> SandboxRun:
    sandbox = kw.pop("sandbox", None) or SandboxSettings(timeout_s=60, cpu_s=60, memory_mb=3072)
    return asyncio.run(run_script(src, out_dir=out, sandbox=sandbox, **kw))


@pytest.mark.blender
def test_legit_script_exports_glb_fbx_blend_and_cleans_up(blender_runtime, tmp_path):
    r = run(LEGIT, tmp_path / "out", formats=["glb", "fbx", "blend"], runtime=blender_runtime)
    assert r.ok, r.error + "\n" + r.log_tail
    assert set(r.outputs) == {"glb", "fbx", "blend"}
    assert r.blocked == []
    assert r.result["mesh_objects"] == 6 and r.result["triangles"] > 100
    w, d, h = r.result["dimensions_m"]
    assert abs(w - 0.45) < 0.02 and abs(d - 0.45) < 0.02 and abs(h - 0.6) < 0.02  # metres
    report = validate_glb(r.outputs["glb"])
    assert report["ok"], report
    assert Path(r.outputs["fbx"]).read_bytes()[:18] == b"Kaydara FBX Binary"
    assert Path(r.outputs["blend"]).stat().st_size > 1000
    assert r.work_dir.startswith(tempfile.gettempdir()) and not Path(r.work_dir).exists()  # removed


@pytest.mark.blender
def test_script_errors_name_the_line(blender_runtime, tmp_path):
    r = run("import bpy\n\nbpy.ops.mesh.primitive_cube_add()\nx = 1 / 0\n", tmp_path, runtime=blender_runtime)
    assert not r.ok and "line 4" in r.error and "ZeroDivisionError" in r.error
    r = run("import bpy\nx = 1\n", tmp_path, runtime=blender_runtime)
    assert not r.ok and "empty scene" in r.error


@dataclass
class Attack:
    name: str
    source: Callable[[dict], str]          # ctx -> script
    expect: tuple[str, ...]                # one of these must be in the error
    settings: SandboxSettings | None = None


class Canary:
    """A TCP listener that counts connections, and a file path outside the work dir."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "outside" / "canary.txt"
        self.path.parent.mkdir(parents=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()


# The runtime-only variants reach forbidden modules WITHOUT import statements (random._os is
# os, os.sys.modules has everything loaded), so only the runtime layers stand in the way.
ATTACKS = [
    Attack("infinite loop", lambda c: "import bpy\nwhile True:\n    pass\n", ("did not finish within",),
           SandboxSettings(timeout_s=8, cpu_s=60, memory_mb=3072)),
    Attack("cpu burn past the CPU limit", lambda c: "import bpy\nn = 0\nwhile True:\n    n += 1\n",
           ("CPU seconds", "did not finish within"), SandboxSettings(timeout_s=60, cpu_s=4, memory_mb=3072)),
    Attack("fork bomb", lambda c: "import random\nos = random._os\nwhile True:\n    os.fork()\n",
           ("os.fork",)),
    Attack("subprocess spawn", lambda c: (
        "import random\nos = random._os\nsp = os.sys.modules['importlib'].import_module('subprocess')\n"
        f"sp.run(['sh', '-c', 'echo pwned > {c['path']}'])\n"), ("subprocess.Popen", "os.posix_spawn", "os.fork")),
    Attack("os.system", lambda c: f"import random\nrandom._os.system('touch {c['path']}')\n", ("os.system",)),
    Attack("memory hog", lambda c: "import bpy\nhog = []\nwhile True:\n    hog.append(bytearray(256 * 1024 * 1024))\n",
           ("out of memory",)),
    Attack("socket connect", lambda c: (
        "import random\nsock = random._os.sys.modules['importlib'].import_module('socket')\n"
        f"s = sock.create_connection(('127.0.0.1', {c['port']}), timeout=2)\ns.sendall(b'hello')\n"),
           ("network access",)),
    Attack("write outside the work dir", lambda c: (
        "import random\nb = random._os.sys.modules['builtins']\n"
        f"with b.open({str(c['path'])!r}, 'w') as f:\n    f.write('pwned')\n"), ("writing", "outside the work dir")),
    Attack("bpy operator saving outside the work dir", lambda c: (
        "import bpy\nbpy.ops.mesh.primitive_cube_add()\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(c['path'])!r}, copy=True)\n"), ("outside the work dir",)),
    Attack("API key from the environment", lambda c: (
        "import bpy, random\nos = random._os\n"
        "found = [v for k, v in os.environ.items() if 'KEY' in k or 'TOKEN' in k]\n"
        "bpy.ops.mesh.primitive_cube_add()\nbpy.context.active_object.name = 'leak:' + '|'.join(found)\n"
        "print('LEAK', found)\n"
        "with os.sys.modules['builtins'].open('/proc/%d/environ' % os.getppid(), 'rb') as f:\n"
        "    bpy.context.active_object.name = str(f.read())\n"), ("reading /proc/",)),
    Attack("__import__ trick", lambda c: f"m = __import__('os')\nm.system('touch {c['path']}')\n",
           ("import of 'os' is not allowed", "'__import__'")),
    Attack("exec trick", lambda c: f"exec(\"import os; os.system('touch {c['path']}')\")\n",
           ("'exec'", "name 'exec' is not defined")),
    Attack("getattr/subclasses trick", lambda c: (
        "w = [k for k in ().__class__.__base__.__subclasses__() if k.__name__ == '_wrap_close'][0]\n"
        "g = getattr(w.__init__, '__glo' + 'bals__')\n"
        f"g['system']('touch {c['path']}')\n"), ("os.system",)),
    Attack("gc walk to the guards", lambda c: (
        "import random\ngc = random._os.sys.modules['importlib'].import_module('gc')\nobjs = gc.get_objects()\n"),
           ("gc.get_objects",)),
]


@pytest.mark.blender
@pytest.mark.parametrize("static_check", [True, False], ids=["full-sandbox", "runtime-layer-only"])
def test_hostile_scripts_are_contained(blender_runtime, tmp_path, monkeypatch, capsys, static_check):
    monkeypatch.setenv("COMFY_AVATAR_LLM_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    work_dirs = []
    contained, failures, lines = 0, [], []
    for i, attack in enumerate(ATTACKS):
        canary = Canary(tmp_path / f"a{i}")
        out = tmp_path / f"a{i}" / "out"
        try:
            src = attack.source({"path": canary.path, "port": canary.port})
            settings = attack.settings or SandboxSettings(timeout_s=60, cpu_s=60, memory_mb=3072)
            r = run(src, out, sandbox=settings, runtime=blender_runtime, static_check=static_check)
        finally:
            canary.close()
        work_dirs.append(r.work_dir)
        written = files_under(out) if out.exists() else []
        leaked = contains_bytes(written, SECRET) or SECRET in r.log_tail or SECRET in str(r.result)
        why = []
        if r.ok:
            why.append("ran to success")
        if not static_check and r.stage == "static check":
            why.append("static check ran although it was switched off")
        if r.stage != "static check" and not any(e in r.error for e in attack.expect):
            why.append(f"unclear error {r.error[:300]!r}")
        if canary.path.exists():
            why.append("wrote the canary file outside the work dir")
        if canary.connections:
            why.append(f"{canary.connections} connection(s) reached the canary port")
        if leaked:
            why.append("the secret leaked")
        if written:
            why.append(f"left files {written}")
        status = "contained" if not why else "ESCAPED: " + "; ".join(why)
        lines.append(f"  {attack.name}: {status} -- {r.stage}: {r.error[:150]}")
        if why:
            failures.append(f"{attack.name}: {'; '.join(why)}")
        else:
            contained += 1
    mode = "full sandbox" if static_check else "runtime layer alone"
    with capsys.disabled():
        print(f"\nhostile scripts, {mode}:\n" + "\n".join(lines))
        print(f"hostile scripts ({mode}): contained {contained}/{len(ATTACKS)}")
    assert not [d for d in work_dirs if d and Path(d).exists()], "a sandbox work dir was left behind"
    assert not failures, "\n".join(failures)
