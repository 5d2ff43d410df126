#!/usr/bin/python3
"""Writes tests/golden/fixtures/trainer_golden.safetensors: the PriMaPs-EM
focal loss as the reference computes it, on random logits and targets, and
the reference's student augmentations with fixed draws.

The loss restates the reference's FocalLoss (train.py): class confidences
are the softmax averaged over every pixel of the batch (ignored ones
included), weights (1 - confidence)^gamma, and the weighted cross entropy
with reduction "none" averaged over all pixels.

The augmentations are the reference's (Compose with student_augs:
RandGaussianBlur, then ColorJitter or MaskGrayscale) with their random draws
given explicitly, computed by torchvision's own functional ops on the
normalized tensor. Run with Debian's python3-torch and python3-torchvision:
  /usr/bin/python3 tests/golden/make_trainer_golden.py
"""
import os
import sys

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                   "trainer_golden.safetensors")


def reference_focal_loss(logits, target, gamma, ignore=255):
    k = logits.size(1)
    confidence = logits.detach().softmax(1).permute(1, 0, 2, 3).reshape(k, -1).mean(dim=1)
    weight = (1 - confidence) ** gamma
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore,
                           reduction="none").mean()


# Draws: (sigma, jitter_branch, jitter, order, brightness, contrast,
# saturation, hue, grayscale)
AUG_CASES = [
    (0.1, True, False, (0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0, False),   # blur only, tiny sigma
    (1.7, True, True, (0, 1, 2, 3), 1.08, 0.93, 1.05, 0.07, False),
    (0.6, True, True, (3, 2, 1, 0), 0.91, 1.09, 0.95, -0.09, False),  # hue first
    (2.0, True, True, (2, 0, 3, 1), 1.1, 0.9, 1.1, -0.02, False),
    (1.2, False, False, (0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0, True),   # grayscale
    (0.9, False, False, (0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0, False),  # grey branch, no-op
]


def reference_student(img, sigma, jitter_branch, jitter, order, b, c, s, h, gray):
    out = TF.gaussian_blur(img, [21, 21], [sigma, sigma])
    if jitter_branch:
        if jitter:
            for op in order:
                if op == 0:
                    out = TF.adjust_brightness(out, b)
                elif op == 1:
                    out = TF.adjust_contrast(out, c)
                elif op == 2:
                    out = TF.adjust_saturation(out, s)
                else:
                    out = TF.adjust_hue(out, h)
    elif gray:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    return out


def main():
    g = torch.Generator().manual_seed(22)
    tensors = {}
    for case, (b, k, h, w, gamma) in enumerate([(2, 5, 6, 7, 2.0), (3, 27, 4, 4, 2.0),
                                                (1, 3, 5, 9, 0.5)]):
        logits = torch.randn(b, k, h, w, generator=g) * 3
        target = torch.randint(0, k, (b, h, w), generator=g)
        target[torch.rand(b, h, w, generator=g) < 0.3] = 255
        loss = reference_focal_loss(logits, target, gamma)
        tensors[f"focal{case}.logits"] = logits
        tensors[f"focal{case}.target"] = target
        tensors[f"focal{case}.gamma"] = torch.tensor([gamma])
        tensors[f"focal{case}.loss"] = loss.reshape(1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixels = torch.randint(0, 256, (3, 23, 29), generator=g, dtype=torch.uint8)
    normalized = (pixels.float() / 255 - mean) / std
    tensors["aug.pixels"] = pixels.permute(1, 2, 0).contiguous()  # HWC, as RgbImage
    tensors["aug.normalized"] = normalized
    for i, case in enumerate(AUG_CASES):
        sigma, jb, j, order, b, c, s, h, gray = case
        # The draws as float32, as the reference's are (torch.empty(1).uniform_).
        f32 = lambda x: float(torch.tensor(x, dtype=torch.float32))
        out = reference_student(normalized.clone(), f32(sigma), jb, j, order,
                                f32(b), f32(c), f32(s), f32(h), gray)
        tensors[f"aug{i}.draws"] = torch.tensor(
            [sigma, float(jb), float(j), *order, b, c, s, h, float(gray)], dtype=torch.float32)
        tensors[f"aug{i}.expected"] = out.contiguous()
    save_safetensors(OUT, tensors)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
