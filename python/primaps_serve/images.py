"""Turns what callers hold (a path, bytes, a numpy array, a PIL image) into
an Image message, and PNG label maps back into numpy arrays."""
import io
import os
from typing import Any, Union

import numpy as np

from ._proto.primaps.v1 import types_pb2

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]


def to_image_message(image: ImageLike) -> types_pb2.Image:
    """An encoded file (path or bytes) is sent as it is, so the server
    decodes it (EXIF orientation included); arrays and PIL images go as raw
    8-bit pixels (H x W grey, H x W x 3 RGB or H x W x 4 RGBA)."""
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return types_pb2.Image(encoded=f.read())
    if isinstance(image, (bytes, bytearray, memoryview)):
        return types_pb2.Image(encoded=bytes(image))
    if not isinstance(image, np.ndarray) and hasattr(image, "mode") and hasattr(image, "size"):
        pil = image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB")
        image = np.asarray(pil)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image array has dtype {image.dtype}; expected uint8 pixels "
                            "(H x W, H x W x 3 RGB or H x W x 4 RGBA)")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"image array has shape {image.shape}; expected H x W, "
                             "H x W x 3 or H x W x 4")
        height, width, channels = image.shape
        raw = types_pb2.RawImage(width=width, height=height, channels=channels,
                                 pixels=np.ascontiguousarray(image).tobytes())
        return types_pb2.Image(raw=raw)
    raise TypeError(f"cannot send a {type(image).__name__} as an image: pass a path, "
                    "encoded bytes, a uint8 numpy array or a PIL image")


def label_map_to_array(label_map: types_pb2.LabelMap) -> np.ndarray:
    """An 8-bit label map (raw bytes or PNG) as an H x W uint8 array."""
    if label_map.png:
        return png_to_array(label_map.png)
    return np.frombuffer(label_map.labels, dtype=np.uint8).reshape(
        label_map.height, label_map.width).copy()


def png_to_array(png: bytes) -> np.ndarray:
    from PIL import Image  # only for PNG label maps

    with Image.open(io.BytesIO(png)) as decoded:
        return np.asarray(decoded).copy()
