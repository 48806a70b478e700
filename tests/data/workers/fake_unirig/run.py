"""Fake UniRig run.py: same flags and checks; odd seeds make a bad skeleton sample."""

import argparse
import json
import os
import shutil

ap = argparse.ArgumentParser()
ap.add_argument("--task", required=True)
ap.add_argument("--seed", type=int, default=123)
for flag in ("--input", "--input_dir", "--output", "--output_dir", "--npz_dir", "--cls", "--data_name"):
    ap.add_argument(flag, default=None)
args = ap.parse_args()
task = open(args.task).read()  # relative task paths resolve against the checkout (cwd)
assert args.output.endswith(".fbx"), "output must be .fbx"
name = ".".join(args.input.removeprefix("./").split(".")[:-1])
npz = os.path.join(args.npz_dir, name, args.data_name or "raw_data.npz")
assert os.path.isfile(npz), f"missing {npz}"
ckpt = [
    line.split(":", 1)[1].strip().strip('"') for line in task.splitlines() if line.startswith("resume_from_checkpoint")
][0]
print(f"checkpoint: {ckpt}")
if "skeleton" in args.task:
    if args.seed % 2 == 1:
        print("unexpected token found: 1027")  # UniRig prints the ValueError and writes nothing
        raise SystemExit(0)
    shutil.copyfile(os.environ["FAKE_UNIRIG_SKELETON"], args.output)
else:
    skel = json.load(open(args.input))
    skel["skinned"] = True
    json.dump(skel, open(args.output, "w"))
