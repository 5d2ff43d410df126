#!/usr/bin/python3
"""Writes checkpoints laid out exactly as the reference's train.py saves them.

    /usr/bin/python3 tests/golden/make_reference_checkpoint.py OUT_DIR [ARCH]

ARCH is dino_vits8 (default) or dinov2_vits14. Seeded random weights (no
model from elsewhere) in the official key layout of the hub models that
train.py's DinoFeaturizerv2 wraps as `self.model`.

OUT_DIR receives:
  reference.ckpt       a PyTorch Lightning checkpoint of UnsupervisedSegmenter
                       after PriMaPs-EM: epoch, global_step,
                       pytorch-lightning_version, state_dict (net.model.*,
                       seghead.weight_g/_v, cluster_probe.{online_model,
                       ema_model}.weight_g/_v, cluster_probe.initted/step,
                       linear_probe.*), optimizer_states, lr_schedulers,
                       callbacks, hparams_name and hyper_parameters =
                       {"opts": argparse.Namespace(...)}, as
                       save_hyperparameters() stores them
  baseline.ckpt        the same after the baseline (theta_M in
                       cluster_probe.cluster_centers.weight_g/_v)
  no_seghead.ckpt      a Lightning checkpoint without seghead
  stego.ckpt           a STEGO-style checkpoint (net.cluster1.*,
                       cluster_probe.clusters)
  mismatch.ckpt        opts naming dino_vitb8 over ViT-S/8 tensors
  backbone.pth         the backbone alone (official names)
  head.safetensors     theta_R = seghead, theta_M = the EMA, the linear probe,
                       in this project's head format (DESIGN.md section 5):
                       what the server must serve from reference.ckpt
"""
import argparse
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save_safetensors  # noqa: E402  (the one writer)

CLASSES = 5


def vit_state_dict(arch, gen):
    """Official DINO / DINOv2 ViT-S key names and shapes, random values."""
    v2 = arch.startswith("dinov2")
    patch = 14 if v2 else 8
    dim, depth, hidden = 384, 12, 1536
    grid = 37 if v2 else 28  # 518 / 14 and 224 / 8

    def rnd(*shape, scale=0.02):
        return torch.randn(*shape, generator=gen) * scale

    sd = collections.OrderedDict()
    sd["cls_token"] = rnd(1, 1, dim)
    sd["pos_embed"] = rnd(1, grid * grid + 1, dim)
    if v2:
        sd["mask_token"] = torch.zeros(1, dim)
    sd["patch_embed.proj.weight"] = rnd(dim, 3, patch, patch, scale=0.05)
    sd["patch_embed.proj.bias"] = rnd(dim)
    for i in range(depth):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1 + rnd(dim, scale=0.1)
        sd[b + "norm1.bias"] = rnd(dim)
        sd[b + "attn.qkv.weight"] = rnd(3 * dim, dim, scale=0.05)
        sd[b + "attn.qkv.bias"] = rnd(3 * dim)
        sd[b + "attn.proj.weight"] = rnd(dim, dim, scale=0.05)
        sd[b + "attn.proj.bias"] = rnd(dim)
        if v2:
            sd[b + "ls1.gamma"] = 0.1 + rnd(dim)
        sd[b + "norm2.weight"] = 1 + rnd(dim, scale=0.1)
        sd[b + "norm2.bias"] = rnd(dim)
        sd[b + "mlp.fc1.weight"] = rnd(hidden, dim, scale=0.05)
        sd[b + "mlp.fc1.bias"] = rnd(hidden)
        sd[b + "mlp.fc2.weight"] = rnd(dim, hidden, scale=0.05)
        sd[b + "mlp.fc2.bias"] = rnd(dim)
        if v2:
            sd[b + "ls2.gamma"] = 0.1 + rnd(dim)
    sd["norm.weight"] = 1 + rnd(dim, scale=0.1)
    sd["norm.bias"] = rnd(dim)
    return sd, dim


def weight_norm(gen, classes, dim):
    """nn.utils.weight_norm(nn.Conv2d(dim, classes, 1, bias=False), dim=0):
    weight_g [K, 1, 1, 1] and weight_v [K, D, 1, 1]."""
    v = torch.randn(classes, dim, 1, 1, generator=gen)
    g = v.flatten(1).norm(dim=1).view(classes, 1, 1, 1) * (
        0.5 + torch.rand(classes, 1, 1, 1, generator=gen))
    return g, v


def opts_namespace(arch, dim):
    family, patch = ("dinov2_vits", 14) if arch.startswith("dinov2") else ("dino_vits", 8)
    return argparse.Namespace(
        backbone_arch=family, backbone_patch=patch, backbone_dim=dim,
        dino_block=1, num_classes=CLASSES, validation_resize=[322 if patch == 14 else 320],
        crop_size=320, batch_size=32, num_epochs=50, learning_rate=5e-3,
        seghead_lr=5e-3, linear_lr=5e-3, ema_update_every=10, ema_decay=0.98,
        seghead_focalloss=2.0, train_state="primaps_em", dataset_root="/data/cityscapes",
        gpu_ids=[0], seed=0, ignore_label=255, precision=32)


def lightning_checkpoint(state_dict, opts):
    """The top level PyTorch Lightning writes (1.x, as train.py used it)."""
    params = [t for k, t in state_dict.items() if k.startswith("seghead.")]
    return {
        "epoch": 49,
        "global_step": 4600,
        "pytorch-lightning_version": "1.6.4",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 49}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val/cluster/mIoU', 'mode': 'max'}": {
                "monitor": "val/cluster/mIoU",
                "best_model_score": torch.tensor(21.5),
                "best_model_path": "/runs/primaps/best.ckpt",
                "current_score": torch.tensor(21.5),
                "dirpath": "/runs/primaps",
                "best_k_models": {"/runs/primaps/best.ckpt": torch.tensor(21.5)},
                "kth_best_model_path": "/runs/primaps/best.ckpt",
                "kth_value": torch.tensor(float("inf")),
                "last_model_path": "",
            }
        },
        "optimizer_states": [{
            "state": {i: {"step": torch.tensor(4600.0), "exp_avg": torch.zeros_like(p),
                          "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params)},
            "param_groups": [{"lr": 5e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                              "weight_decay": 0, "amsgrad": False, "maximize": False,
                              "foreach": None, "capturable": False,
                              "params": list(range(len(params)))}],
        }],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"opts": opts},
    }


def main():
    out = sys.argv[1]
    arch = sys.argv[2] if len(sys.argv) > 2 else "dino_vits8"
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(20240607)
    backbone, dim = vit_state_dict(arch, gen)
    seg_g, seg_v = weight_norm(gen, CLASSES, dim)
    online_g, online_v = weight_norm(gen, CLASSES, dim)
    ema_g, ema_v = weight_norm(gen, CLASSES, dim)
    center_g, center_v = weight_norm(gen, CLASSES, dim)
    linear_w = torch.randn(CLASSES, dim, 1, 1, generator=gen) * 0.05
    linear_b = torch.randn(CLASSES, generator=gen) * 0.1

    sd = collections.OrderedDict()
    for k, t in backbone.items():
        sd["net.model." + k] = t
    sd["linear_probe.weight"] = linear_w
    sd["linear_probe.bias"] = linear_b
    em = collections.OrderedDict(sd)
    em["cluster_probe.initted"] = torch.Tensor([True])
    em["cluster_probe.step"] = torch.tensor([4600])
    em["cluster_probe.online_model.weight_g"] = online_g
    em["cluster_probe.online_model.weight_v"] = online_v
    em["cluster_probe.ema_model.weight_g"] = ema_g
    em["cluster_probe.ema_model.weight_v"] = ema_v
    em["seghead.weight_g"] = seg_g
    em["seghead.weight_v"] = seg_v
    opts = opts_namespace(arch, dim)
    torch.save(lightning_checkpoint(em, opts), os.path.join(out, "reference.ckpt"))

    baseline = collections.OrderedDict(sd)
    baseline["cluster_probe.cluster_centers.weight_g"] = center_g
    baseline["cluster_probe.cluster_centers.weight_v"] = center_v
    baseline["seghead.weight_g"] = seg_g
    baseline["seghead.weight_v"] = seg_v
    torch.save(lightning_checkpoint(baseline, opts), os.path.join(out, "baseline.ckpt"))

    torch.save(lightning_checkpoint(collections.OrderedDict(sd), opts),
               os.path.join(out, "no_seghead.ckpt"))

    stego = collections.OrderedDict(sd)
    stego["net.cluster1.0.weight"] = torch.randn(70, dim, 1, 1, generator=gen)
    stego["net.cluster1.0.bias"] = torch.zeros(70)
    stego["cluster_probe.clusters"] = torch.randn(CLASSES, 70, generator=gen)
    torch.save(lightning_checkpoint(stego, opts), os.path.join(out, "stego.ckpt"))

    wrong = opts_namespace(arch, dim)
    wrong.backbone_arch = "dino_vitb"
    torch.save(lightning_checkpoint(em, wrong), os.path.join(out, "mismatch.ckpt"))

    torch.save(backbone, os.path.join(out, "backbone.pth"))
    save_safetensors(
        os.path.join(out, "head.safetensors"),
        {"theta_r.v": seg_v.flatten(1), "theta_r.g": seg_g.flatten(),
         "theta_m.v": ema_v.flatten(1), "theta_m.g": ema_g.flatten(),
         "linear.weight": linear_w.flatten(1).contiguous(), "linear.bias": linear_b},
        {"backbone": arch, "classes": str(CLASSES), "feature_dim": str(dim), "step": "0"})


if __name__ == "__main__":
    main()
