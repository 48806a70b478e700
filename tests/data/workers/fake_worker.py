"""A small model worker for tests: the real protocol module (workers/_protocol.py), no model.

Ops: echo, env (environment keys + a few values), sleep, crash (writes to stderr, exits 7),
spawn (starts a long-lived child in the same process group), stderr (writes lines), fail
(raises), progress, connect (a TCP connection to 127.0.0.1:port, as a malicious input might).
``--fail-preflight`` sends a failed handshake; ``--slow-start S`` waits
before it; ``--crash-on-start`` dies before it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "comfy_avatar_nodes" / "workers"))

from _protocol import Preflight, WorkerFailure, problem, serve  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fail-preflight", action="store_true")
    ap.add_argument("--slow-start", type=float, default=0.0)
    ap.add_argument("--crash-on-start", action="store_true")
    opts = ap.parse_args()

    def startup():
        print("fake worker: a library print during model load lands in stderr, not in the protocol stream")
        if opts.crash_on_start:
            sys.stderr.write("fake worker: dying before the handshake\n")
            os._exit(9)
        time.sleep(opts.slow_start)
        info = {"versions": {"fake": "1.0"}, "device": {"cuda": False, "name": None, "reason": "fake"}}
        if opts.fail_preflight:
            raise Preflight(
                [
                    problem("missing_weights", "fake weights are missing"),
                    problem("no_cuda", "no usable CUDA GPU: fake"),
                ],
                info,
            )
        return info, {
            "echo": echo,
            "env": env,
            "sleep": sleep,
            "crash": crash,
            "stderr": stderr,
            "fail": fail,
            "spawn": spawn,
            "progress": progress,
            "connect": connect,
        }

    def echo(args, req):
        return {"args": args, "pid": os.getpid()}

    def env(args, req):
        return {"keys": sorted(os.environ), "values": {k: os.environ.get(k) for k in args.get("show", [])}}

    def sleep(args, req):
        t0 = time.time()
        time.sleep(float(args.get("seconds", 1)))
        return {
            "slept": args.get("seconds", 1),
            "pid": os.getpid(),
            "t0": t0,
            "t1": time.time(),
            "tag": args.get("tag"),
        }

    def crash(args, req):
        sys.stderr.write("fake worker: about to crash: CUDA error: an illegal memory access (fake)\n")
        sys.stderr.flush()
        os._exit(7)

    def stderr(args, req):
        for i in range(int(args.get("lines", 3))):
            sys.stderr.write(f"fake stderr line {i}\n")
        print("printed to stdout by a library")  # fd 1 now goes to stderr
        subprocess.run([sys.executable, "-c", "print('child stdout line')"], check=True)
        return {"lines": int(args.get("lines", 3))}

    def fail(args, req):
        if args.get("kind"):
            raise WorkerFailure(args["kind"], "expected failure", log_tail="step log line", step="extract")
        raise ValueError("boom from the fake worker")

    def spawn(args, req):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        return {"child": child.pid, "pgid": os.getpgid(0)}

    def connect(args, req):
        import socket

        try:
            with socket.create_connection(("127.0.0.1", int(args["port"])), timeout=3) as s:
                s.sendall(b"from the worker")
            return {"connected": True}
        except OSError as e:
            return {"connected": False, "error": f"{type(e).__name__}: {e}"}

    def progress(args, req):
        for i in range(1, 4):
            req.progress(i / 4, f"step {i}")
        return {"done": True}

    return serve(startup)


if __name__ == "__main__":
    sys.exit(main())
