"""Mesh -> skeleton + skin: the CPU template rig (cpu.py), UniRig on a GPU (unirig.py) and the
heuristic map from an unnamed skeleton to VRM humanoid bones (humanoid.py)."""
