"""The pool ``skal label`` shows: an image folder or a ``.npy`` array of images.

Items have string ids (the path relative to the folder, or the row number of
the array), a PNG rendering for the page and a feature vector for the model
(the image downsampled to a small square). Files that cannot be decoded are
reported, not fatal.
"""

import io
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ArrayPool", "FolderPool", "UnreadableImage", "open_pool"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class UnreadableImage(ValueError):
    """An item whose image cannot be decoded."""


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow comes with skal[label]
        raise ImportError("skal label needs pillow: pip install 'skal[label]'") from exc
    return Image


def _to_features(img, size, mode):
    """A PIL image as a float32 vector of ``size x size`` pixels in [0, 1]."""
    Image = _pil()
    img = img.convert("L" if mode == "gray" else "RGB").resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return a  # (channels, size, size)


def _png(img, max_side):
    Image = _pil()
    img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
    scale = max_side / max(img.size)
    if scale < 1 or max(img.size) < 48:  # blow tiny images up so they can be seen
        w, h = (max(1, round(s * scale)) for s in img.size)
        img = img.resize((w, h), Image.NEAREST if scale > 1 else Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class FolderPool:
    """Every image file below ``root`` (recursively), sorted by path.

    An item inside a sub-folder named like one of ``classes`` gets that class as
    its initial label (:meth:`folder_labels`).

    Examples
    --------
    >>> import tempfile
    >>> pool = FolderPool(tempfile.mkdtemp())  # doctest: +SKIP
    """

    kind = "folder"

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"Pool folder {str(root)!r} does not exist or is not a folder.")
        files = sorted(
            p for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(
                f"Pool folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})."
            )
        self.ids = [p.relative_to(self.root).as_posix() for p in files]
        self._index = {item: i for i, item in enumerate(self.ids)}

    def __len__(self):
        return len(self.ids)

    def __contains__(self, item_id):
        return item_id in self._index

    def path(self, item_id):
        return self.root / item_id

    def _open(self, item_id):
        Image = _pil()
        try:
            img = Image.open(self.path(item_id))
            img.load()
        except Exception as exc:  # PIL raises many types for broken files
            raise UnreadableImage(f"{item_id}: {type(exc).__name__}: {exc}") from exc
        return img

    def png(self, item_id, max_side=160):
        """The item as PNG bytes for the page; raises :class:`UnreadableImage`."""
        return _png(self._open(item_id), max_side)

    def features(self, item_id, size=16, mode="rgb"):
        """The item as a ``(channels, size, size)`` float32 array in [0, 1]."""
        return _to_features(self._open(item_id), size, mode)

    def folder_labels(self, classes):
        """``{id: class}`` for items whose first path component is a class name."""
        names = set(classes)
        out = {}
        for item in self.ids:
            parts = item.split("/")
            if len(parts) > 1 and parts[0] in names:
                out[item] = parts[0]
        return out

    def source(self, item_id):
        """How the item is named in exports (its path relative to the pool)."""
        return item_id


class ArrayPool:
    """A ``.npy`` array of images: ``(n, H, W)``, ``(n, H, W, C)`` or ``(n, C, H, W)``
    with C in 1, 3 or 4; the ids are the row numbers as strings."""

    kind = "array"

    def __init__(self, path):
        self.file = Path(path)
        try:
            self.array = np.load(self.file, mmap_mode="r")
        except Exception as exc:
            raise ValueError(f"Cannot read {str(path)!r} as a .npy array: {exc}") from exc
        a = self.array
        if a.ndim not in (3, 4) or len(a) == 0:
            raise ValueError(
                f"{str(path)!r} has shape {a.shape}; expected images (n, H, W), (n, H, W, C) "
                "or (n, C, H, W)."
            )
        if a.ndim == 4 and a.shape[-1] not in (1, 3, 4):
            if a.shape[1] not in (1, 3, 4):
                raise ValueError(
                    f"{str(path)!r} has shape {a.shape}: no channel axis of 1, 3 or 4.")
            self._channels_first = True
        else:
            self._channels_first = False
        self.ids = [str(i) for i in range(len(a))]

    def __len__(self):
        return len(self.ids)

    def __contains__(self, item_id):
        return isinstance(item_id, str) and item_id.isdigit() and int(item_id) < len(self.ids)

    def _open(self, item_id):
        Image = _pil()
        a = np.asarray(self.array[int(item_id)], dtype=np.float64)
        if self._channels_first:
            a = np.moveaxis(a, 0, -1)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if not np.isfinite(a).all():
            raise UnreadableImage(f"row {item_id} holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if hi <= 1.0 and lo >= 0.0:
            a = a * 255.0
        elif hi > 255.0 or lo < 0.0:
            a = (a - lo) / ((hi - lo) or 1.0) * 255.0
        a = a.astype(np.uint8)
        return Image.fromarray(a[..., :3] if a.ndim == 3 else a)

    def png(self, item_id, max_side=160):
        return _png(self._open(item_id), max_side)

    def features(self, item_id, size=16, mode="rgb"):
        return _to_features(self._open(item_id), size, mode)

    def folder_labels(self, classes):
        return {}

    def source(self, item_id):
        return f"{self.file.name}#{item_id}"


def open_pool(path):
    """A :class:`FolderPool` for a folder, an :class:`ArrayPool` for a ``.npy`` file."""
    p = Path(path)
    if p.is_dir():
        return FolderPool(p)
    if p.suffix.lower() == ".npy" and p.is_file():
        return ArrayPool(p)
    raise ValueError(f"POOL {str(path)!r} must be an image folder or a .npy file of images.")
