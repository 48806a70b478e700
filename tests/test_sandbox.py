"""The sandbox for model-written Blender scripts: the static pass, legitimate scripts, limits,
cleanup, and the 14 original hostile scripts.

The 14 run twice: under OS isolation (sandbox.isolation bwrap, the default) and with
isolation none and the static check switched off, so the in-process layer (audit hook,
operator guard, restricted builtins, rlimits, timeout, stripped environment) has to contain
them on its own. Each mode prints "contained N/M". The adversarial suite against the
finished design is tests/test_sandbox_attacks.py; the isolation itself, tests/test_isolation.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _agent_helpers import contains_bytes, files_under, validate_glb

from comfy_avatar_nodes.core.config import SandboxSettings
from comfy_avatar_nodes.core.executor.sandbox import SandboxRun, advise, check_script, run_script, safe_env

SECRET = "sk-canary-5d1e0c7f2b9a4e11"
LEGIT = """
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
"""


# ---------------------------------------------------------------- static pass (no Blender)


# What the STRICT check (sandbox.isolation: none, where nothing else contains the script) refuses.
@pytest.mark.parametrize(
    "src, line, needle",
    [
        ("import bpy\nimport shutil\n", 2, "import of 'shutil'"),
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
        ("import os\nos.system('id')\n", 2, "'system'"),
        ("import bpy\nbpy.data.texts.load('/proc/1/environ')\n", 2, "'load'"),
        ("import bpy\nbpy.app.handlers.depsgraph_update_post.append(print)\n", 2, "'handlers'"),
        ("import bpy\nimport importlib\n", 2, "'importlib'"),
        ("import ctypes\n", 1, "'ctypes'"),
        ("import socket\n", 1, "'socket'"),
        ("def f(:\n  pass\n", 1, "syntax error"),
    ],
)
def test_strict_check_refuses_with_line_number(src, line, needle):
    problems = check_script(src, strict=True)
    assert problems, f"not refused: {src!r}"
    assert any(ln == line and needle in msg for ln, msg in problems), problems


ORDINARY = """import os, os.path, sys, json, math, random, pathlib
import bpy, bmesh
from mathutils import Vector
argv = sys.argv[sys.argv.index("--") + 1:]
out = argv[argv.index("--output") + 1]
assert out == os.environ["COMFY_AVATAR_OUTPUT"]
meta = pathlib.Path(os.environ["COMFY_AVATAR_OUTPUT_DIR"]) / "meta.json"
meta.write_text(json.dumps({"seed": random.random()}))
name = os.path.splitext(os.path.basename(out))[0]
bpy.ops.export_scene.gltf(filepath=out, export_format="GLB")
"""


def test_advisory_pass_lets_ordinary_scripts_through():
    """With OS isolation only what will certainly fail is refused: a syntax error."""
    assert check_script(LEGIT) == [] and check_script(ORDINARY) == [] and advise(ORDINARY) == []
    assert check_script(ORDINARY, strict=True) == []  # os.path, sys.argv, pathlib, json: fine even strictly
    hostile = "import os, socket\nos.system('id')\nexec('x=1')\nv = ().__class__.__base__\n"
    assert check_script(hostile) == []  # the OS contains these; they are advice, not refusals
    assert check_script("def f(:\n  pass\n") == [(1, "syntax error: invalid syntax")]
    notes: dict[int, str] = {}
    for ln, msg in advise(
        "import socket, subprocess\nimport bpy\nbpy.app.handlers.frame_change_pre.append(print)\n"
        "while True:\n    pass\nopen('/etc/x', 'w')\nopen('/proc/self/environ')\n"
    ):
        notes[ln] = notes.get(ln, "") + msg
    assert "no network" in notes[1] and "cannot start processes" in notes[1]
    assert "never fire" in notes[3] and "timeout" in notes[4]
    assert "outside the work dir" in notes[6] and 7 not in notes  # reading is not writing


def test_safe_env_keeps_no_secrets(tmp_path):
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": SECRET,
        "COMFY_AVATAR_LLM_API_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": "AKIA",
        "MY_TOKEN": SECRET,
        "DB_PASSWORD": SECRET,
        "GITHUB_TOKEN": SECRET,
        "RANDOM_THING": SECRET,
    }
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


# What a coder model writes: os.path and sys.argv, materials, the four modifiers, bmesh, its own export.
MODIFIERS = """import os, os.path, sys, json, math, random, pathlib
import bpy, bmesh
from mathutils import Vector
argv = sys.argv[sys.argv.index("--") + 1:]
out = argv[argv.index("--output") + 1]
assert out == os.environ["COMFY_AVATAR_OUTPUT"] and os.path.dirname(out) == os.environ["COMFY_AVATAR_OUTPUT_DIR"]
notes = pathlib.Path(os.path.dirname(out)) / "notes.json"
notes.write_text(json.dumps({"seed": 7}))
random.seed(json.loads(notes.read_text())["seed"])

def material(name, rgba, metal=0.0):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    bsdf = m.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Metallic"].default_value = metal
    return m

bpy.ops.mesh.primitive_cube_add(size=1, location=(0, 0, 0.5))
body = bpy.context.active_object
body.name = "Body"
body.data.materials.append(material("Steel", (0.6, 0.6, 0.65, 1), 1.0))
arr = body.modifiers.new("Array", "ARRAY"); arr.count = 3; arr.relative_offset_displace = (1.2, 0, 0)
bev = body.modifiers.new("Bevel", "BEVEL"); bev.width = 0.05; bev.segments = 3
bpy.ops.mesh.primitive_cylinder_add(radius=0.2, depth=4, location=(1.2, 0, 0.5), rotation=(0, math.pi / 2, 0))
cutter = bpy.context.active_object
boo = body.modifiers.new("Bool", "BOOLEAN"); boo.operation = "DIFFERENCE"; boo.object = cutter
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.3, location=(0, 1.5, 0.3))
shell = bpy.context.active_object
shell.name = "Shell"
sol = shell.modifiers.new("Solidify", "SOLIDIFY"); sol.thickness = 0.02
shell.data.materials.append(material("Red", (0.8, 0.1, 0.1, 1)))
bm = bmesh.new()
bmesh.ops.create_cone(bm, cap_ends=True, segments=24, radius1=0.3, radius2=0.0, depth=0.6)
bmesh.ops.translate(bm, verts=bm.verts, vec=Vector((0, -1.5, 0.3)))
mesh = bpy.data.meshes.new("Cone"); bm.to_mesh(mesh); bm.free()
cone = bpy.data.objects.new("Cone", mesh)
bpy.context.scene.collection.objects.link(cone)
bpy.data.objects.remove(cutter)  # applied below through the evaluated mesh; the cutter itself is not exported
"""
MODIFIERS = MODIFIERS.replace(
    "bpy.data.objects.remove(cutter)  #", "cutter.hide_set(True)\ncutter.hide_render = True  #"
)
MODIFIERS += """bpy.ops.export_scene.gltf(filepath=out, export_format="GLB", export_apply=True)
print("OWN-EXPORT", os.path.getsize(out))
"""
SUBDIVIDED = """import bpy
bpy.ops.mesh.primitive_monkey_add(size=1, location=(0, 0, 0.5))
sub = bpy.context.active_object.modifiers.new("Subsurf", "SUBSURF")
sub.levels = sub.render_levels = 6          # 500 faces x 4^6 = 2,048,000 faces
"""


@pytest.mark.blender
def test_legitimate_scripts_succeed(blender_runtime, tmp_path):
    """The coder model's ordinary scripts, under OS isolation, run side by side (2 cores)."""
    settings = SandboxSettings(timeout_s=170, cpu_s=300, memory_mb=6144)

    async def both():
        return await asyncio.gather(
            run_script(
                MODIFIERS,
                out_dir=tmp_path / "mods",
                name="mods",
                formats=["glb", "fbx"],
                sandbox=settings,
                runtime=blender_runtime,
            ),
            run_script(
                SUBDIVIDED,
                out_dir=tmp_path / "big",
                name="big",
                formats=["glb"],
                sandbox=settings,
                runtime=blender_runtime,
            ),
        )

    mods, big = asyncio.run(both())
    assert mods.ok and mods.isolation == "bwrap", mods.error + "\n" + mods.log_tail
    assert "OWN-EXPORT" in mods.log_tail and mods.advice == []
    names = {o["name"] for o in mods.result["objects"]}
    assert {"Body", "Shell", "Cone"} <= names and mods.result["triangles"] > 1000
    assert validate_glb(mods.outputs["glb"])["ok"]
    assert Path(mods.outputs["fbx"]).read_bytes()[:18] == b"Kaydara FBX Binary"
    assert big.ok, big.error + "\n" + big.log_tail
    assert big.result["triangles"] >= 4_000_000  # 2,048,000 quads
    glb = Path(big.outputs["glb"])
    head = glb.read_bytes()[:20]
    assert head[:4] == b"glTF" and int.from_bytes(head[8:12], "little") == glb.stat().st_size
    chunk = json.loads(glb.read_bytes()[20 : 20 + int.from_bytes(head[12:16], "little")])
    counts = [a["count"] for a in chunk["accessors"] if a.get("type") == "SCALAR"]
    assert max(counts) >= 3 * 4_000_000  # the triangle indices are all there
    for r in (mods, big):
        assert not Path(r.work_dir).parent.exists()


@dataclass
class Attack:
    name: str
    source: Callable[[dict], str]  # ctx -> script
    expect: tuple[str, ...]  # isolation none: one of these must be in the error
    settings: SandboxSettings | None = None
    expect_os: tuple[str, ...] = ()  # OS isolation: one of these in the error ("" = no particular error)


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
    Attack(
        "infinite loop",
        lambda c: "import bpy\nwhile True:\n    pass\n",
        ("did not finish within",),
        SandboxSettings(timeout_s=8, cpu_s=60, memory_mb=3072),
        ("did not finish within",),
    ),
    Attack(
        "cpu burn past the CPU limit",
        lambda c: "import bpy\nn = 0\nwhile True:\n    n += 1\n",
        ("CPU seconds", "did not finish within"),
        SandboxSettings(timeout_s=60, cpu_s=4, memory_mb=3072),
        ("CPU seconds", "did not finish within"),
    ),
    Attack(
        "fork bomb",
        lambda c: "import random\nos = random._os\nwhile True:\n    os.fork()\n",
        ("os.fork",),
        expect_os=("Operation not permitted",),
    ),
    Attack(
        "subprocess spawn",
        lambda c: (
            "import random\nos = random._os\nsp = os.sys.modules['importlib'].import_module('subprocess')\n"
            f"sp.run(['sh', '-c', 'echo pwned > {c['path']}'])\n"
        ),
        ("subprocess.Popen", "os.posix_spawn", "os.fork"),
    ),
    Attack("os.system", lambda c: f"import random\nrandom._os.system('touch {c['path']}')\n", ("os.system",)),
    Attack(
        "memory hog",
        lambda c: "import bpy\nhog = []\nwhile True:\n    hog.append(bytearray(256 * 1024 * 1024))\n",
        ("out of memory",),
        expect_os=("out of memory",),
    ),
    Attack(
        "socket connect",
        lambda c: (
            "import random\nsock = random._os.sys.modules['importlib'].import_module('socket')\n"
            f"s = sock.create_connection(('127.0.0.1', {c['port']}), timeout=2)\ns.sendall(b'hello')\n"
        ),
        ("network access",),
    ),
    Attack(
        "write outside the work dir",
        lambda c: (
            "import random\nb = random._os.sys.modules['builtins']\n"
            f"with b.open({str(c['path'])!r}, 'w') as f:\n    f.write('pwned')\n"
        ),
        ("writing", "outside the work dir"),
    ),
    Attack(
        "bpy operator saving outside the work dir",
        lambda c: (
            "import bpy\nbpy.ops.mesh.primitive_cube_add()\n"
            f"bpy.ops.wm.save_as_mainfile(filepath={str(c['path'])!r}, copy=True)\n"
        ),
        ("outside the work dir",),
    ),
    Attack(
        "API key from the environment",
        lambda c: (
            "import bpy, random\nos = random._os\n"
            "found = [v for k, v in os.environ.items() if 'KEY' in k or 'TOKEN' in k]\n"
            "bpy.ops.mesh.primitive_cube_add()\nbpy.context.active_object.name = 'leak:' + '|'.join(found)\n"
            "print('LEAK', found)\n"
            "with os.sys.modules['builtins'].open('/proc/%d/environ' % os.getppid(), 'rb') as f:\n"
            "    bpy.context.active_object.name = str(f.read())\n"
        ),
        ("reading /proc/",),
    ),
    Attack(
        "__import__ trick",
        lambda c: f"m = __import__('os')\nm.system('touch {c['path']}')\n",
        ("import of 'os' is not allowed", "'__import__'", "(os.system)"),
    ),
    Attack(
        "exec trick",
        lambda c: f"exec(\"import os; os.system('touch {c['path']}')\")\n",
        ("'exec'", "name 'exec' is not defined"),
    ),
    Attack(
        "getattr/subclasses trick",
        lambda c: (
            "w = [k for k in ().__class__.__base__.__subclasses__() if k.__name__ == '_wrap_close'][0]\n"
            "g = getattr(w.__init__, '__glo' + 'bals__')\n"
            f"g['system']('touch {c['path']}')\n"
        ),
        ("os.system",),
    ),
    Attack(
        "gc walk to the guards",
        lambda c: (
            "import random\ngc = random._os.sys.modules['importlib'].import_module('gc')\nobjs = gc.get_objects()\n"
        ),
        ("gc.get_objects",),
    ),
]


def _pid_ns_alive(ns: str) -> bool:
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and os.readlink(d / "ns" / "pid") == ns:
                return (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            continue
    return False


@pytest.mark.blender
@pytest.mark.parametrize("mode", ["os-isolation", "isolation-none-runtime-layer-only"])
def test_hostile_scripts_are_contained(blender_runtime, tmp_path, monkeypatch, capsys, mode):
    isolated = mode == "os-isolation"
    if isolated:
        from conftest import need

        from comfy_avatar_nodes.core.runtime.isolation import check

        st = check()
        need(st.ok, f"bubblewrap isolation is not available: {st.problem}")
    monkeypatch.setenv("COMFY_AVATAR_LLM_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("RANDOM_THING", SECRET)
    prelude = "import os as _o\nprint('PIDNS', _o.readlink('/proc/self/ns/pid'), flush=True)\n" if isolated else ""
    cases = []
    for i, attack in enumerate(ATTACKS):
        canary = Canary(tmp_path / f"a{i}")
        base = attack.settings or SandboxSettings(timeout_s=60, cpu_s=60, memory_mb=3072)
        settings = base if isolated else SandboxSettings(**{**base.__dict__, "isolation": "none"})
        src = attack.source({"path": canary.path, "port": canary.port})
        cases.append((attack, canary, settings, prelude + src if isolated else src, tmp_path / f"a{i}" / "out"))

    async def all_runs():
        sem = asyncio.Semaphore(2)

        async def one(attack, canary, settings, src, out):
            async with sem:
                return await run_script(
                    src,
                    out_dir=out,
                    sandbox=settings,
                    runtime=blender_runtime,
                    static_check=isolated,
                    keep_log=out.parent / "kept.log",
                )

        return await asyncio.gather(*(one(*c) for c in cases))

    runs = asyncio.run(all_runs())
    contained, failures, lines = 0, [], []
    for (attack, canary, settings, _, out), r in zip(cases, runs):
        canary.close()
        kept = (out.parent / "kept.log").read_text(errors="replace") if (out.parent / "kept.log").exists() else ""
        written = files_under(out) if out.exists() else []
        leaked = contains_bytes(written, SECRET) or SECRET in kept or SECRET in str(r.result) or SECRET in r.error
        why = []
        if isolated:
            if r.isolation != "bwrap":
                why.append(f"ran with isolation {r.isolation!r}")
            if attack.expect_os and not any(e in r.error for e in attack.expect_os):
                why.append(f"unclear error {r.error[:300]!r}")
            ns = re.search(r"PIDNS (pid:\[\d+\])", kept)
            if ns is None or ns.group(1) == os.readlink("/proc/self/ns/pid") or _pid_ns_alive(ns.group(1)):
                why.append("no pid namespace of its own, or a process of the job outlived it")
            if written and not r.ok:
                why.append(f"left files {written}")
        else:
            if r.ok:
                why.append("ran to success")
            if r.stage == "static check":
                why.append("static check ran although it was switched off")
            if not any(e in r.error for e in attack.expect):
                why.append(f"unclear error {r.error[:300]!r}")
            if written:
                why.append(f"left files {written}")
        if r.duration_s > settings.timeout_s + 30:
            why.append(f"returned after {r.duration_s:.0f} s")
        if canary.path.exists():
            why.append("wrote the canary file outside the work dir")
        if canary.connections:
            why.append(f"{canary.connections} connection(s) reached the canary port")
        if leaked:
            why.append("the secret leaked")
        if Path(r.work_dir).parent.exists():
            why.append("the work dir was left behind")
        status = "contained" if not why else "ESCAPED: " + "; ".join(why)
        lines.append(f"  {attack.name}: {status} -- ok={r.ok} {r.stage}: {r.error[:150]}")
        if why:
            failures.append(f"{attack.name}: {'; '.join(why)}")
        else:
            contained += 1
    label = "OS isolation (bwrap)" if isolated else "isolation none, runtime layer alone"
    with capsys.disabled():
        print(f"\nhostile scripts, {label}:\n" + "\n".join(lines))
        print(f"hostile scripts ({label}): contained {contained}/{len(ATTACKS)}")
    assert not failures, "\n".join(failures)
