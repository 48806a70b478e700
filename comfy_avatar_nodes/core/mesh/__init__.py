"""Picture -> mesh: silhouette inflation on the CPU (silhouette.py), TRELLIS on a GPU (trellis.py)."""
