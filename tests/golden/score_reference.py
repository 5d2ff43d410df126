#!/usr/bin/python3
"""Scores the reference checkpoint as the reference's test.py does, in
PyTorch, for `primaps-trainer evaluate` to be compared with.

    /usr/bin/python3 tests/golden/score_reference.py CKPT_DIR VAL_DIR ARCH RESIZE

CKPT_DIR holds what make_reference_checkpoint.py wrote (reference.ckpt and
backbone.pth); VAL_DIR gets a small labelled set (images/, labels/) written
here if it has none. Prints the figures as JSON: for theta_M and theta_R, with and without the
CRF (Hungarian-matched over the whole set), and the linear probe
(unmatched), mIoU and pixel accuracy in percent.

test.py, restated: the image through ToTensor, a bilinear resize of the
short side to RESIZE, the centre crop and ImageNet normalization; the label
through a nearest resize and the same crop, ids >= classes ignored; the
features of the image and of its mirror (mirrored back) averaged,
bilinearly upsampled to the label size; theta_M = the EMA's weight-normed
1x1 convolution, theta_R = seghead's, the linear probe with its bias;
argmax. With the CRF (test.py's batched_crf, primaps_modules/crf.py): the
crop de-normalized as to_pil_image does (times 255, truncated to 8 bits),
the head's log-softmax softmaxed again, pydensecrf's unary -log(clip(p,
1e-5, 1)), the Gaussian kernel (sxy 1, weight 3) and the bilateral one (sxy
67, srgb 3, weight 4), 10 mean-field iterations, argmax; the dense CRF is
make_golden.py's restatement of pydensecrf.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import MEAN, STD, ViT, dense_crf, preprocess  # noqa: E402

IGNORE = 255


def make_val_set(val_dir, classes, count=6, width=112, height=90):
    """Regions of class colours with noise; labels are the region ids (and
    a band of ignore pixels)."""
    rng = np.random.default_rng(7)
    os.makedirs(os.path.join(val_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(val_dir, "labels"), exist_ok=True)
    palette = rng.integers(0, 255, size=(classes, 3))
    for i in range(count):
        label = np.zeros((height, width), np.uint8)
        cuts = sorted(rng.integers(10, width - 10, size=classes - 1))
        for k, x in enumerate(cuts):
            label[:, x:] = (k + 1 + i) % classes
        label[: height // 3] = (i + 2) % classes
        label[height // 2: height // 2 + 3] = IGNORE
        image = palette[np.minimum(label, classes - 1)].astype(np.float64)
        image += rng.normal(0, 20, size=image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            os.path.join(val_dir, "images", f"val_{i}.png"))
        Image.fromarray(label).save(os.path.join(val_dir, "labels", f"val_{i}.png"))


def labels_at_crop(label, resize):
    """Nearest resize of the short side, then the centre crop."""
    h, w = label.shape
    new_long = int(resize * max(h, w) / min(h, w))
    nh, nw = (resize, new_long) if h <= w else (new_long, resize)
    t = torch.from_numpy(label)[None, None].float()
    t = F.interpolate(t, size=(nh, nw), mode="nearest")[0, 0].long()
    top, left = int(round((nh - resize) / 2.0)), int(round((nw - resize) / 2.0))
    return t[top:top + resize, left:left + resize]


def weight_norm_conv(feats, g, v):
    w = g.flatten()[:, None] * v.flatten(1) / v.flatten(1).norm(dim=1, keepdim=True)
    return torch.einsum("kd,bdhw->bkhw", w, feats)


def scores(confusion, match):
    """confusion[pred][truth]; with `match`, predictions are first mapped to
    classes one to one by the Hungarian algorithm (maximizing the pixels
    that agree), as the reference's UnsupervisedMetrics does."""
    k = confusion.shape[0]
    if match:
        rows, cols = linear_sum_assignment(confusion, maximize=True)
        mapped = np.zeros_like(confusion)
        for r, c in zip(rows, cols):
            mapped[c] = confusion[r]
        confusion = mapped
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(1) - tp
    fn = confusion.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)  # NaN for a class neither predicted nor present
    return {"miou": float(np.nanmean(iou) * 100),
            "accuracy": float(tp.sum() / confusion.sum() * 100)}


def main():
    ckpt_dir, val_dir, arch, resize = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ckpt = torch.load(os.path.join(ckpt_dir, "reference.ckpt"), map_location="cpu")
    state = ckpt["state_dict"]
    classes = ckpt["hyper_parameters"]["opts"].num_classes
    if not os.path.isdir(os.path.join(val_dir, "images")):
        make_val_set(val_dir, classes)
    v2 = arch.startswith("dinov2")
    patch = 14 if v2 else 8
    vit = ViT(v2, patch, 37 if v2 else 28, dim=384, depth=12, heads=6)
    vit.load_state_dict(torch.load(os.path.join(ckpt_dir, "backbone.pth")))
    vit.eval()
    heads = {
        "theta_m": lambda f: weight_norm_conv(f, state["cluster_probe.ema_model.weight_g"],
                                              state["cluster_probe.ema_model.weight_v"]),
        "theta_r": lambda f: weight_norm_conv(f, state["seghead.weight_g"],
                                              state["seghead.weight_v"]),
        "linear": lambda f: torch.einsum("kd,bdhw->bkhw", state["linear_probe.weight"].flatten(1), f)
        + state["linear_probe.bias"][None, :, None, None],
    }
    names = list(heads) + ["theta_m_crf", "theta_r_crf"]
    confusion = {name: np.zeros((classes, classes), np.int64) for name in names}
    for name in sorted(os.listdir(os.path.join(val_dir, "images"))):
        img = torch.from_numpy(np.array(Image.open(
            os.path.join(val_dir, "images", name)).convert("RGB")))
        x = preprocess(img, resize, "center", patch)[None]
        label = labels_at_crop(np.array(Image.open(
            os.path.join(val_dir, "labels", os.path.splitext(name)[0] + ".png"))), resize)
        label[label >= classes] = IGNORE
        with torch.no_grad():
            feats = (vit.features(x) + vit.features(x.flip(dims=[3])).flip(dims=[3])) / 2
            feats = F.interpolate(feats, label.shape, mode="bilinear", align_corners=False)
            keep = label != IGNORE
            # to_pil_image(UnNormalize(x)): times 255, truncated to uint8.
            crop = ((x[0] * STD + MEAN) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
            for head, fn in heads.items():
                logits = fn(feats)
                pred = logits.argmax(1)[0]
                np.add.at(confusion[head], (pred[keep].numpy(), label[keep].numpy()), 1)
                if head == "linear":
                    continue
                probs = F.softmax(F.log_softmax(logits, 1), 1)[0].numpy()
                q = dense_crf(crop, probs, fast=True)
                pred = torch.from_numpy(q.argmax(0))
                np.add.at(confusion[head + "_crf"],
                          (pred[keep].numpy(), label[keep].numpy()), 1)
    print(json.dumps({
        "theta_m": scores(confusion["theta_m"], True),
        "theta_m_crf": scores(confusion["theta_m_crf"], True),
        "theta_r": scores(confusion["theta_r"], True),
        "theta_r_crf": scores(confusion["theta_r_crf"], True),
        "linear": scores(confusion["linear"], False),
    }))


if __name__ == "__main__":
    main()
