"""Other processes the pack runs: Blender jobs (blender.py), warm model workers (workers.py),
the model envs' settings checks (model_env.py) and the process helpers both share (procs.py)."""
