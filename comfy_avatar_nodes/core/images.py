"""Loading and validating input pictures: every path ends in an (H, W, 4) uint8 RGBA array.

Two sources: files on disk (``load_image``, used by tests, the bench and scripts) and
ComfyUI IMAGE/MASK tensors the node layer has already turned into numpy (``from_comfy``).
Bad input raises AvatarError naming the input and the fix, never a bare PIL/numpy error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import AvatarError

log = logging.getLogger("comfy_avatar.images")

#: Smallest side (pixels) a picture may have; below this there is no silhouette to inflate.
MIN_SIDE = 32
#: Largest pixel count accepted (about 8k x 8k); bigger files are rejected before decoding fully.
MAX_PIXELS = 64_000_000
FORMATS_HINT = "save it as PNG (best: with transparency), JPEG, WebP, BMP or TIFF"


def _check_size(h: int, w: int, what: str) -> None:
    if min(h, w) < MIN_SIDE:
        raise AvatarError(
            what,
            f"is only {w}x{h} pixels, smaller than the {MIN_SIDE} px minimum",
            "use a larger picture (a few hundred pixels tall or more works well)",
        )
    if h * w > MAX_PIXELS:
        raise AvatarError(
            what,
            f"is {w}x{h} pixels, more than the {MAX_PIXELS // 1_000_000} megapixel limit",
            "scale the picture down (2048 px on the long side is plenty)",
        )


def load_image(path: str | os.PathLike[str], what: str = "image") -> np.ndarray:
    """Read a picture file into an (H, W, 4) uint8 RGBA array.

    Any format Pillow decodes is accepted; EXIF rotation is applied, 16-bit and
    greyscale pictures are converted, animated files give their first frame.
    ``what`` names the input in error messages (e.g. the node input or CLI flag).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    label = f"{what} '{p}'"
    if not p.exists():
        raise AvatarError(label, "file does not exist", "check the path (relative paths start at the current folder)")
    if not p.is_file():
        raise AvatarError(label, "is not a file", "give the path of a picture file, not a folder")
    if p.stat().st_size == 0:
        raise AvatarError(label, "file is empty (0 bytes)", f"re-export or re-download the picture; {FORMATS_HINT}")
    try:
        with Image.open(p) as src:
            _check_size(src.height, src.width, label)
            src.load()  # decode now: truncated or corrupt data fails here, not later
            rgba = _to_rgba(ImageOps.exif_transpose(src))
    except AvatarError:
        raise
    except UnidentifiedImageError:
        raise AvatarError(label, "is not a picture Pillow can read (unknown or corrupt format)", FORMATS_HINT) from None
    except Image.DecompressionBombError as e:
        raise AvatarError(
            label, f"is too large to decode safely ({e})", "scale the picture down (2048 px on the long side is plenty)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad chunks, broken headers
        raise AvatarError(
            label, f"is corrupt or truncated ({e})", f"re-export or re-download the picture; {FORMATS_HINT}"
        ) from None
    log.debug("loaded %s: %dx%d", p, rgba.shape[1], rgba.shape[0])
    return rgba


def _to_rgba(im) -> np.ndarray:
    """Pillow image of any mode -> (H, W, 4) uint8 RGBA."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        peak = float(a.max()) if a.size else 0.0
        if im.mode == "F":
            full = 1.0 if peak <= 1.0 else 255.0  # float pictures are 0..1 or 0..255
        else:
            full = 65535.0 if peak > 255 else 255.0  # 16-bit or 8-bit data in an int mode
        g = np.clip(np.rint(a / full * 255.0), 0, 255).astype(np.uint8)
        out = np.empty(g.shape + (4,), np.uint8)
        out[..., :3] = g[..., None]
        out[..., 3] = 255
        return out
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return np.ascontiguousarray(np.asarray(im.convert("RGBA"), dtype=np.uint8))


def from_comfy(
    image_array: np.ndarray, mask: np.ndarray | None = None, *, what: str = "image", mask_is_background: bool = True
) -> np.ndarray:
    """A ComfyUI IMAGE (+ optional MASK), already converted to numpy, -> (H, W, 4) uint8 RGBA.

    ``image_array``: (H, W, 3|4) or (1, H, W, 3|4) floats in 0..1 (ComfyUI IMAGE layout).
    ``mask``: (H, W) or (1, H, W) floats in 0..1, or None. ComfyUI's LoadImage MASK is
    ``1 - alpha``: 1 means transparent/background, so by default alpha = 1 - mask.
    Masks from segmentation nodes usually mean the opposite (1 = subject); pass
    ``mask_is_background=False`` for those. LoadImage gives a 64x64 all-zero dummy mask
    for pictures without alpha: an all-zero mask of another size is ignored (opaque);
    any other size mismatch is an error naming the mask input.
    """
    img = np.asarray(image_array)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise AvatarError(
            what,
            f"expected an image of shape (H, W, 3), got {tuple(np.asarray(image_array).shape)}",
            "connect a single IMAGE (a batch of one), e.g. from Load Image",
        )
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).all():
        raise AvatarError(what, "contains NaN or infinite values", "check the node that produced the image")
    h, w = img.shape[:2]
    _check_size(h, w, what)
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.rint(np.clip(img[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)
    alpha = np.clip(img[..., 3], 0.0, 1.0) if img.shape[2] == 4 else np.ones((h, w), np.float32)

    if mask is not None:
        m = np.asarray(mask, dtype=np.float32)
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2:
            raise AvatarError(
                "mask",
                f"expected a mask of shape (H, W), got {tuple(np.asarray(mask).shape)}",
                "connect a single MASK (a batch of one), e.g. Load Image's MASK output",
            )
        use_mask = True
        if m.shape != (h, w):
            if not m.any():
                log.debug("ignoring %s all-zero mask (LoadImage's dummy for pictures without alpha)", m.shape)
                use_mask = False
            else:
                raise AvatarError(
                    "mask",
                    f"is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}",
                    "use the MASK that came with the same image, or resize it to the image size",
                )
        if use_mask:
            if not np.isfinite(m).all():
                raise AvatarError("mask", "contains NaN or infinite values", "check the node that produced the mask")
            m = np.clip(m, 0.0, 1.0)
            alpha = alpha * ((1.0 - m) if mask_is_background else m)
    rgba[..., 3] = np.rint(alpha * 255.0).astype(np.uint8)
    return rgba
