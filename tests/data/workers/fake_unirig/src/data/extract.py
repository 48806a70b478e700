"""Fake UniRig extract: same flags; writes <output_dir>/<input without suffix>/raw_data.npz."""

import argparse
import os

ap = argparse.ArgumentParser()
for flag in (
    "--config",
    "--require_suffix",
    "--faces_target_count",
    "--num_runs",
    "--force_override",
    "--id",
    "--time",
):
    ap.add_argument(flag, required=True)
for flag in ("--input", "--input_dir", "--output_dir"):
    ap.add_argument(flag, default=None)
args = ap.parse_args()
assert os.path.isfile(args.config), f"config {args.config} not found relative to {os.getcwd()}"
name = ".".join(args.input.removeprefix("./").split(".")[:-1])
out = os.path.join(args.output_dir, name)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "raw_data.npz"), "w") as f:
    f.write(f"extracted from {args.input} (faces_target_count={args.faces_target_count})\n")
print("1 models processed")
