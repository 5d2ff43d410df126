#!/usr/bin/python3
"""Writes the Pillow resize goldens: tests/golden/fixtures/pil_resize/.

Each case is an input PNG and Pillow's bilinear resize of it (with
antialiasing, Image.resize(size, Image.BILINEAR), as torchvision's Resize runs
it on PIL images), for odd sizes and down/up scales; and label maps (mode L)
with Pillow's NEAREST resize to torchvision's Resize(int) sizes. Run with Debian's
python3-pil:  /usr/bin/python3 tests/golden/make_resize_golden.py
Deterministic: rerunning rewrites the same bytes.
"""
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "pil_resize")

# (input width, height) -> list of (output width, height)
CASES = {
    (205, 103): [(64, 32), (99, 50), (205, 40), (30, 103)],  # 2048x1024-like downscales
    (37, 23): [(13, 7), (100, 61), (37, 24), (1, 1)],  # odd sizes, up and down
    (1, 5): [(3, 9), (1, 2)],
    (17, 1): [(4, 1), (40, 3)],
    (250, 167): [(240, 160)],  # a photo to a slightly smaller short side
    (45, 30): [(241, 161)],  # upscale by more than 5
}


def make_input(w, h, seed):
    """Gradients, hard-edged blocks and noise: every filter path matters."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 255.0 * x / max(w - 1, 1)
    img[..., 1] = 255.0 * y / max(h - 1, 1)
    img[..., 2] = 128 + 127 * np.sin(x / 3.0 + y / 5.0)
    for _ in range(6):
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        img[y0:y0 + max(1, h // 4), x0:x0 + max(1, w // 4)] = rng.randint(0, 256, 3)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# Label maps resized with Pillow's NEAREST the way torchvision's Resize(int)
# sizes them (short side r, long side int(r * long / short)): input size ->
# short sides.
LABEL_CASES = {
    (205, 103): [32, 103, 7],
    (37, 23): [13, 40],
    (23, 37): [10, 64],
    (17, 9): [40, 1],
}


def resized_size(w, h, r):
    if w <= h:
        return r, int(r * h / w)
    return int(r * w / h), r


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.RandomState(99)
    for (w, h), shorts in sorted(LABEL_CASES.items()):
        labels = Image.fromarray(rng.randint(0, 30, (h, w)).astype(np.uint8), "L")
        labels.save(os.path.join(OUT, f"lbl_{w}x{h}.png"))
        for r in shorts:
            ow, oh = resized_size(w, h, r)
            labels.resize((ow, oh), Image.NEAREST).save(
                os.path.join(OUT, f"lbl_{w}x{h}_short_{r}.png"))
    for seed, ((w, h), outs) in enumerate(sorted(CASES.items())):
        src = make_input(w, h, seed)
        src.save(os.path.join(OUT, f"in_{w}x{h}.png"))
        for ow, oh in outs:
            dst = src.resize((ow, oh), Image.BILINEAR)
            dst.save(os.path.join(OUT, f"in_{w}x{h}_to_{ow}x{oh}.png"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
