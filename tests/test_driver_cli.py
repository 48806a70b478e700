"""``comfy-avatar run`` end to end against the in-process fake ComfyUI: exit codes,
messages a user reads, uploaded inputs wired into the prompt, downloaded outputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fake_comfy import FakeComfy, FakeJob, load_recorded

from driver import cli
from driver.convert import ConversionError
from driver.errors import ServerUnreachable

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = {
    "10": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}, "_meta": {"title": "photo"}},
    "11": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}, "_meta": {"title": "mask"}},
    "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "avatar/front"}},
}
PNG = b"\x89PNG\r\n\x1a\nhello"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(WORKFLOW))
    img = tmp_path / "me.png"
    img.write_bytes(PNG)
    mask = tmp_path / "m.png"
    mask.write_bytes(b"mask")
    return {"wf": wf, "img": img, "mask": mask, "out": tmp_path / "out"}


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_run_uploads_inputs_runs_and_downloads(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with FakeComfy() as fake:
        code = cli.main(
            [
                "run",
                str(files["wf"]),
                "--input",
                f"photo={files['img']}",
                "--input",
                f"11={files['mask']}",
                "--out",
                str(files["out"]),
                "--server",
                fake.url,
            ]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    posted = fake.posted[0]["prompt"]
    assert posted["10"]["inputs"]["image"] == "comfy-avatar/me.png"  # by title
    assert posted["11"]["inputs"]["image"] == "comfy-avatar/m.png"  # by id
    assert [(u["name"], u["subfolder"], u["data"]) for u in fake.uploads] == [
        ("me.png", "comfy-avatar", PNG),
        ("m.png", "comfy-avatar", b"mask"),
    ]
    saved = files["out"].resolve() / "avatar" / "front_00001_.png"
    assert out.splitlines() == [str(saved)] and saved.read_bytes() == b"\x89PNG fake 20"
    # not a TTY: plain progress lines, one per node, then a summary
    assert '[1/3] node 10 LoadImage "photo"' in err and "[3/3] node 20 SaveImage" in err
    assert "success" in err and "1 file(s)" in err


def test_input_with_explicit_input_name(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with FakeComfy() as fake:
        code = cli.main(
            [
                "run",
                str(files["wf"]),
                "-i",
                f"mask.image={files['mask']}",
                "--out",
                str(files["out"]),
                "--server",
                fake.url,
                "--progress",
                "none",
            ]
        )
    assert code == 0 and fake.posted[0]["prompt"]["11"]["inputs"]["image"] == "comfy-avatar/m.png"


def test_node_failure_exits_1_with_the_node_message(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    def boom(job: FakeJob) -> None:
        job.start()
        job.node("10")
        job.fail("10", "cannot identify image file 'me.png'", "PIL.UnidentifiedImageError")

    with FakeComfy(boom) as fake:
        code = cli.main(
            [
                "run",
                str(files["wf"]),
                "--input",
                f"photo={files['img']}",
                "--out",
                str(files["out"]),
                "--server",
                fake.url,
            ]
        )
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "node 10 (LoadImage)" in err and "PIL.UnidentifiedImageError: cannot identify image file 'me.png'" in err
    assert not files["out"].exists() or not any(files["out"].iterdir())


def test_validation_error_exits_1_with_readable_lines(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeComfy() as fake:
        fake.reject = (400, load_recorded()["sessions"]["validation_error"]["post_body"])
        code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--server", fake.url])
    err = capsys.readouterr().err
    assert code == 1
    assert "ComfyUI rejected the prompt: Prompt outputs failed validation" in err
    assert "  node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1" in err


def test_unreachable_server_exits_3_naming_the_url(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url = _dead_url()
    code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--server", url])
    err = capsys.readouterr().err
    assert code == 3 and url in err and "--local" in err and "COMFYUI_DIR" in err


@pytest.mark.parametrize(
    "argv_tail, expect",
    [
        (["--input", "photo"], "must look like NAME=FILE"),
        (["--input", "photo=/no/such/file.png"], "does not exist"),
        (["--input", "portrait=IMG"], "use one of: 10 (LoadImage, title 'photo'), 11 (LoadImage, title 'mask')"),
        (["--input", "20=IMG"], "no node with that id or title"),
    ],
)
def test_usage_errors_exit_2(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], argv_tail: list[str], expect: str
) -> None:
    argv_tail = [a.replace("IMG", str(files["img"])) for a in argv_tail]
    with FakeComfy() as fake:
        code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--server", fake.url, *argv_tail])
    assert code == 2 and expect in capsys.readouterr().err
    assert fake.posted == []


def test_unreadable_or_foreign_workflow_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    url = _dead_url()
    assert cli.main(["run", str(tmp_path / "missing.json"), "--out", "o", "--server", url]) == 2
    assert cli.main(["run", str(bad), "--out", "o", "--server", url]) == 2
    assert cli.main(["run", str(other), "--out", "o", "--server", url]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "not readable JSON" in err and "neither an API-format prompt" in err


def test_argparse_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "wf.json"])  # --out missing
    assert info.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "wf.json", "--out", "o", "--server", "x", "--local"])
    assert info.value.code == 2


def test_local_without_comfyui_dir_is_a_clear_usage_error(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COMFYUI_DIR", raising=False)
    code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--local"])
    err = capsys.readouterr().err
    assert code == 2 and "COMFYUI_DIR" in err and "is not set" in err and "--server" in err
    monkeypatch.setenv("COMFYUI_DIR", str(files["out"].parent))
    assert cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--local"]) == 2
    assert "has no main.py" in capsys.readouterr().err


def test_ui_workflow_goes_through_driver_convert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}))
    seen = {}

    def ui_to_api(workflow: dict, object_info: dict, frontend_version: str | None = None) -> dict:
        seen["nodes"], seen["has_info"] = workflow["nodes"], "EmptyImage" in object_info
        seen["frontend"] = frontend_version
        return {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ui"}},
        }

    monkeypatch.setattr("driver.convert.ui_to_api", ui_to_api)
    with FakeComfy() as fake:
        code = cli.main(["run", str(ui), "--out", str(tmp_path / "out"), "--server", fake.url])
    # the server's editor release picks the editor's titles for untitled nodes
    assert code == 0 and seen == {"nodes": [{"id": 1, "type": "EmptyImage"}], "has_info": True, "frontend": "1.27.10"}
    assert fake.posted[0]["prompt"]["2"]["class_type"] == "SaveImage"

    def refuse(workflow: dict, object_info: dict, frontend_version: str | None = None) -> dict:
        raise ConversionError("node 1 (Mystery): unknown node type. Fix: install its pack")

    monkeypatch.setattr("driver.convert.ui_to_api", refuse)
    with FakeComfy() as fake:
        assert cli.main(["run", str(ui), "--out", str(tmp_path / "out"), "--server", fake.url]) == 2
        assert fake.posted == []
    assert "cannot convert the UI workflow: node 1 (Mystery): unknown node type" in capsys.readouterr().err


# The old driver had two is_api_prompt: cli.py's (class_type must be a string) and
# convert.py's (class_type merely present). They disagreed on these files.
DISPUTED = [
    {"1": {"class_type": 7, "inputs": {}}},
    {"1": {"class_type": None}},
    {"1": {"class_type": ["LoadImage"], "inputs": {}}},
]


@pytest.mark.parametrize("workflow", DISPUTED, ids=["number", "null", "list"])
def test_run_batch_and_convert_classify_a_workflow_alike(
    workflow: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from driver.convert import required_node_types, to_api_prompt
    from driver.workflow import is_api_prompt

    assert not is_api_prompt(workflow)  # ComfyUI looks class_type up by name: only a string can be one
    with pytest.raises(ConversionError, match="neither an API prompt"):
        to_api_prompt(workflow, {})  # the converter no longer passes it on to the server
    assert required_node_types(workflow) == set()
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(workflow))
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    url = _dead_url()
    errors = []
    for argv in (
        ["run", str(wf), "--out", str(tmp_path / "o"), "--server", url],
        [
            "batch",
            str(wf),
            "--images",
            str(tmp_path / "imgs"),
            "--out",
            str(tmp_path / "o"),
            "--server",
            url,
            "--db",
            str(tmp_path / "j.db"),
        ],
    ):
        assert cli.main(argv) == 2, argv
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "is neither an API-format prompt" in errors[0]


def test_json_mode_prints_events_and_a_result_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with FakeComfy() as fake:
        code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--server", fake.url, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert lines[0]["type"] == "driver_submitted" and any(e["type"] == "executed" for e in lines)
    assert lines[-1]["type"] == "result" and lines[-1]["status"] == "success"
    assert lines[-1]["files"] == [str(files["out"].resolve() / "avatar" / "front_00001_.png")]


def test_ctrl_c_cancels_the_prompt_on_the_server(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def stuck(job: FakeJob) -> None:
        job.start()
        job.node("10")

    def interrupting_progress(mode: str):
        from driver.progress import _Base

        class Interrupt(_Base):
            def __call__(self, event, job):  # type: ignore[no-untyped-def]
                if event.type == "executing":
                    raise KeyboardInterrupt

        return Interrupt()

    monkeypatch.setattr("driver.progress.make_progress", interrupting_progress)
    with FakeComfy(stuck) as fake:
        code = cli.main(["run", str(files["wf"]), "--out", str(files["out"]), "--server", fake.url])
    pid = fake.posted[0]["prompt_id"]
    assert code == 130 and fake.interrupts == [pid] and fake.deleted == [pid]


def test_a_driver_error_from_any_command_becomes_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def status(args) -> int:  # type: ignore[no-untyped-def]
        raise ServerUnreachable("http://h:1")

    monkeypatch.setattr("driver.cli.jobs.cmd_status", status)
    assert cli.main(["status"]) == 3 and "http://h:1" in capsys.readouterr().err


def test_python_dash_m_driver_entry_point(files: dict[str, Path]) -> None:
    url = _dead_url()
    proc = subprocess.run(
        [sys.executable, "-m", "driver", "run", str(files["wf"]), "--out", str(files["out"]), "--server", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and url in proc.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "driver", "run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "NAME=FILE" in helped.stdout and "Exit codes" in helped.stdout


def test_help_imports_argparse_and_the_cli_only() -> None:
    """--help and argument errors must not pay for the HTTP/websocket stack, SQLAlchemy,
    rich or the converter (measured: ~1.4 s of imports on a 2-core VM when they did)."""
    code = (
        "import sys\nfrom driver.cli import main\ntry:\n    main(['batch', '--help'])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(' '.join(sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    loaded = set(proc.stderr.split())
    heavy = {
        "sqlalchemy",
        "rich",
        "requests",
        "urllib3",
        "websocket",
        "driver.convert",
        "driver.client",
        "driver.store",
        "driver.batch",
    }
    assert proc.returncode == 0 and "Exit codes" in proc.stdout, proc.stderr
    assert "driver.cli.batch" in loaded and loaded & heavy == set()


def test_a_run_off_a_terminal_loads_no_bars_job_store_or_requests(tmp_path: Path) -> None:
    """`run` starts at once (issue 12): rich only for bars on a terminal, requests only for
    a proxy or a netrc, SQLAlchemy never (run keeps no job records)."""
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(WORKFLOW))
    code = (
        "import sys\nfrom driver.cli import main\n"
        f"rc = main(['run', {str(wf)!r}, '--server', sys.argv[1], '--out', {str(tmp_path / 'out')!r}])\n"
        "sys.stderr.write('MODULES ' + ' '.join(sys.modules))\nsys.exit(rc)"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k not in ("FORCE_COLOR", "NETRC")
    }
    env["HOME"] = str(tmp_path)  # no ~/.netrc
    with FakeComfy() as fake:
        proc = subprocess.run(
            [sys.executable, "-c", code, fake.url], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
        )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stderr.rsplit("MODULES ", 1)[1].split())
    assert "driver.client" in loaded and loaded & {"rich", "requests", "sqlalchemy", "driver.store"} == set()


# -- --local with a stand-in ComfyUI checkout ---------------------------------------------------
STAND_IN_MAIN = r"""
import argparse, json, os, subprocess, sys, time
sys.path.insert(0, {tests!r})
p = argparse.ArgumentParser()
for flag in ("--listen", "--port", "--base-directory", "--database-url"):
    p.add_argument(flag)
for flag in ("--cpu", "--disable-auto-launch"):
    p.add_argument(flag, action="store_true")
a = p.parse_args()
if os.environ.get("STAND_IN_FAIL"):
    print("ModuleNotFoundError: No module named 'torch'", flush=True)
    sys.exit(1)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
base = a.base_directory
json.dump({{"argv": sys.argv[1:], "child": child.pid, "cwd": os.getcwd(),
           "custom_nodes": {{n: os.path.realpath(os.path.join(base, "custom_nodes", n))
                            for n in os.listdir(os.path.join(base, "custom_nodes"))}},
           "dirs": sorted(os.listdir(base)), "models": os.path.realpath(os.path.join(base, "models"))}},
          open({record!r}, "w"))
from _fake_comfy import FakeComfy
print("Starting server", flush=True)
with FakeComfy(port=int(a.port)):
    time.sleep(600)
"""


def _stand_in_checkout(tmp_path: Path) -> tuple[Path, Path]:
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "comfy" / "cli_args.py").write_text(
        "".join(
            f'parser.add_argument("{f}")\n'
            for f in ("--listen", "--port", "--base-directory", "--disable-auto-launch", "--cpu", "--database-url")
        )
    )
    (comfy / "custom_nodes" / "OtherPack").mkdir(parents=True)
    (comfy / "custom_nodes" / "__pycache__").mkdir()
    (comfy / "models").mkdir()
    record = tmp_path / "record.json"
    (comfy / "main.py").write_text(STAND_IN_MAIN.format(tests=str(ROOT / "tests"), record=str(record)))
    return comfy, record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is not alive
        return fh.read().split()[2] != "Z"


def test_local_starts_a_private_server_and_stops_its_process_group(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    comfy, record = _stand_in_checkout(tmp_path)
    monkeypatch.setenv("COMFYUI_DIR", str(comfy))
    monkeypatch.setenv("COMFYUI_PYTHON", sys.executable)
    code = cli.main(["run", str(files["wf"]), "--local", "--out", str(files["out"]), "--start-timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (files["out"] / "avatar" / "front_00001_.png").is_file()
    rec = json.loads(record.read_text())
    argv = rec["argv"]
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--listen") + 1] == "127.0.0.1" and "--cpu" in argv and "--disable-auto-launch" in argv
    assert f"ComfyUI is up at http://127.0.0.1:{port}" in err
    base = Path(argv[argv.index("--base-directory") + 1])
    assert rec["cwd"] == str(comfy.resolve())
    assert rec["custom_nodes"] == {
        "OtherPack": str((comfy / "custom_nodes" / "OtherPack").resolve()),
        "comfy-avatar": str(ROOT),
    }
    assert {"custom_nodes", "input", "output", "temp", "user", "models"} <= set(rec["dirs"])
    assert rec["models"] == str((comfy / "models").resolve())
    # stopped: the server's child process (same process group) is gone, base dir removed
    deadline = time.monotonic() + 5
    while _alive(rec["child"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(rec["child"])
    assert not base.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(port))) != 0


def test_local_server_that_dies_on_start_exits_3_with_its_log(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    comfy, _ = _stand_in_checkout(tmp_path)
    monkeypatch.setenv("COMFYUI_DIR", str(comfy))
    monkeypatch.setenv("COMFYUI_PYTHON", sys.executable)
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    code = cli.main(["run", str(files["wf"]), "--local", "--out", str(files["out"])])
    err = capsys.readouterr().err
    assert code == 3
    assert "exited with code 1 while starting" in err and "No module named 'torch'" in err


def test_local_python_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from driver.local import find_python

    comfy = tmp_path / "ComfyUI"
    monkeypatch.delenv("COMFYUI_PYTHON", raising=False)
    (comfy / ".venv" / "bin").mkdir(parents=True)
    assert find_python(comfy) == Path(sys.executable)
    (comfy / ".venv" / "bin" / "python").write_text("")
    assert find_python(comfy) == comfy / ".venv" / "bin" / "python"
    monkeypatch.setenv("COMFYUI_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(Exception, match="COMFYUI_PYTHON"):
        find_python(comfy)


def test_local_refuses_a_comfyui_without_the_needed_flags(tmp_path: Path) -> None:
    from driver.errors import DriverError
    from driver.local import check_flags

    comfy = tmp_path / "old"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "comfy" / "cli_args.py").write_text('parser.add_argument("--listen")\nparser.add_argument("--port")\n')
    with pytest.raises(DriverError, match="--base-directory"):
        check_flags(comfy)


def test_rich_bars_render_nodes_and_steps_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from driver.client import ComfyClient
    from driver.progress import RichProgress

    def stepped(job: FakeJob) -> None:
        job.start()
        job.node("10")
        job.node("11", steps=4)
        job.node("20", output=job.save_image("20", "front_00001_.png", PNG, subfolder="avatar"))
        job.succeed()

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    seen: list[tuple[float | None, float, str]] = []
    with FakeComfy(stepped) as fake, ComfyClient(fake.url) as client, RichProgress(console) as bars:

        def spy(event, job):  # type: ignore[no-untyped-def]
            bars(event, job)
            if event.type == "progress":
                step = bars.bars.tasks[1]
                seen.append((step.total, step.completed, step.description))

        client.run(WORKFLOW, on_event=spy)
        overall = bars.bars.tasks[0]
        assert (overall.completed, overall.total, overall.description) == (3, 3, "finished")
    assert seen[-1] == (4.0, 4.0, '  11 LoadImage "mask"')
    assert "3/3" in buf.getvalue()


def test_relative_comfyui_python_is_made_absolute(tmp_path, monkeypatch):
    """ComfyUI is started from its own folder, so a relative COMFYUI_PYTHON must not stay relative."""
    from driver.local import find_python

    venv_bin = tmp_path / "envs" / "comfy" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMFYUI_PYTHON", "envs/comfy/bin/python")
    found = find_python(tmp_path / "ComfyUI")
    assert found.is_absolute() and found == venv_bin / "python"  # the venv link itself, not its target


def test_a_ui_workflow_run_asks_the_server_for_its_node_classes_only(tmp_path: Path) -> None:
    """Converting an editor save needs the definitions of the classes it uses, not the whole
    /object_info (seconds on a server with many packs: issue 12's start-up)."""
    ui = ROOT / "tests" / "data" / "trivial_ui_workflow.json"  # EmptyImage -> SaveImage, editor format
    with FakeComfy() as fake:
        code = cli.main(["run", str(ui), "--out", str(tmp_path / "out"), "--server", fake.url, "--set", "1.width=16"])
    assert code == 0
    prompt = fake.posted[0]["prompt"]
    assert prompt["1"]["inputs"]["width"] == 16 and prompt["2"]["inputs"]["filename_prefix"] == "trivial_ui"
    asked = [p for m, p in fake.requests if m == "GET" and p.startswith("/object_info")]
    assert "/object_info" not in asked, "the whole node list was fetched"
    assert sorted(asked) == ["/object_info/EmptyImage", "/object_info/SaveImage"], asked
