"""One asset -> GLB/FBX/OBJ/.blend at several levels of detail, previews and metadata (asset.py)."""
