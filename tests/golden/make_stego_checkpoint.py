#!/usr/bin/python3
"""Writes checkpoints laid out as STEGO's train_segmentation.py saves them,
and what PyTorch computes from them.

    /usr/bin/python3 tests/golden/make_stego_checkpoint.py OUT_DIR IMAGE RESIZE

Seeded random weights (no model from elsewhere): a DINO ViT-S/8 in the
official key layout under net.model.*, and STEGO's DinoFeaturizer
projection (src/modules.py) restated here: code = cluster1(f) + cluster2(f)
with cluster1 a 1x1 convolution D -> dim and cluster2 1x1 D -> D, ReLU,
1x1 D -> dim, on the normed last-block patch features f; ClusterLookup's
clusters (K x dim) scored by cosine.

OUT_DIR receives:
  stego.ckpt             a PyTorch Lightning checkpoint of
                         LitUnsupervisedSegmenter: state_dict (net.model.*,
                         net.cluster1.0.*, net.cluster2.{0,2}.*,
                         cluster_probe.clusters, train_cluster_probe.clusters,
                         linear_probe.*, decoder.*) and hyper_parameters =
                         {"n_classes": K, "cfg": an OmegaConf DictConfig}
  stego_no_cluster1.ckpt  the same without net.cluster1
  stego_linear.ckpt      projection_type "linear" (no net.cluster2)
  stego_bad_dim.ckpt     clusters of another width than the projection
  hp.pth                 the same weights in HP's save_checkpoint layout
                         (net_model_state_dict with model.*, cluster1.*,
                         cluster2.*, ema_model1/2.*; cluster_model_state_dict;
                         linear_model_state_dict; optimizer states None)
  backbone.pth           the ViT alone (official names)
  stego_golden.safetensors  for IMAGE at the RESIZE centre crop (eval mode:
                         no dropout): "code" (dim x h x w, the projection's
                         output on the grid) and "labels" (the crop's
                         cluster predictions: the code bilinearly upsampled
                         to the crop, argmax of the cosine to the clusters,
                         as STEGO's eval does)
"""
import collections
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import ViT, preprocess, save_safetensors  # noqa: E402
from make_reference_checkpoint import lightning_checkpoint, vit_state_dict  # noqa: E402

CLASSES = 5
CODE_DIM = 70


def conv(gen, out_ch, in_ch, scale):
    return (torch.randn(out_ch, in_ch, 1, 1, generator=gen) * scale,
            torch.randn(out_ch, generator=gen) * 0.01)


def stego_cfg(projection_type="nonlinear"):
    """The fields of STEGO's train_config.yml that describe the model."""
    return OmegaConf.create({
        "output_root": "../", "pytorch_data_dir": "/datadrive/pytorch-data/",
        "experiment_name": "exp1", "log_dir": "cocostuff", "dataset_name": "cocostuff27",
        "arch": "dino", "num_workers": 24, "max_steps": 7000, "batch_size": 32,
        "dim": CODE_DIM, "dino_patch_size": 8, "dino_feat_type": "feat",
        "model_type": "vit_small", "projection_type": projection_type,
        "pretrained_weights": None, "dropout": True, "crop_type": "five",
        "res": 224, "lr": 5e-4, "correspondence_weight": 1.0,
        "neg_inter_weight": 0.63, "pos_inter_weight": 0.25, "pos_intra_weight": 0.67,
        "n_classes": CLASSES, "continuous": True,
    })


def project(state, f):
    """STEGO's DinoFeaturizer after the ViT, in eval mode."""
    def c(x, name):
        return F.conv2d(x, state[name + ".weight"], state[name + ".bias"])
    return c(f, "net.cluster1.0") + c(F.relu(c(f, "net.cluster2.0")), "net.cluster2.2")


def main():
    out, image_path, resize = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(20231112)
    backbone, dim = vit_state_dict("dino_vits8", gen)
    sd = collections.OrderedDict(("net.model." + k, t) for k, t in backbone.items())
    sd["net.cluster1.0.weight"], sd["net.cluster1.0.bias"] = conv(gen, CODE_DIM, dim, 0.05)
    sd["net.cluster2.0.weight"], sd["net.cluster2.0.bias"] = conv(gen, dim, dim, 0.05)
    sd["net.cluster2.2.weight"], sd["net.cluster2.2.bias"] = conv(gen, CODE_DIM, dim, 0.05)
    sd["decoder.weight"], sd["decoder.bias"] = conv(gen, dim, CODE_DIM, 0.05)
    sd["cluster_probe.clusters"] = torch.randn(CLASSES, CODE_DIM, generator=gen)
    sd["train_cluster_probe.clusters"] = torch.randn(CLASSES, CODE_DIM, generator=gen)
    sd["linear_probe.weight"], sd["linear_probe.bias"] = conv(gen, CLASSES, CODE_DIM, 0.1)
    sd["crf.linear.weight"] = torch.randn(1, 1, generator=gen)

    def save(state, name, cfg):
        ckpt = lightning_checkpoint(state, None)
        ckpt["hyper_parameters"] = {"n_classes": CLASSES, "cfg": cfg}
        ckpt["hparams_name"] = "kwargs"
        torch.save(ckpt, os.path.join(out, name))

    save(sd, "stego.ckpt", stego_cfg())
    save(collections.OrderedDict((k, t) for k, t in sd.items()
                                 if not k.startswith("net.cluster1.")),
         "stego_no_cluster1.ckpt", stego_cfg())
    save(collections.OrderedDict((k, t) for k, t in sd.items()
                                 if not k.startswith("net.cluster2.")),
         "stego_linear.ckpt", stego_cfg("linear"))
    bad = collections.OrderedDict(sd)
    bad["cluster_probe.clusters"] = torch.randn(CLASSES, CODE_DIM + 2, generator=gen)
    save(bad, "stego_bad_dim.ckpt", stego_cfg())

    net = collections.OrderedDict()
    for k, t in sd.items():
        if k.startswith("net."):
            net["module." + k[4:]] = t  # HP saves its DataParallel wrapper
    for k in list(net):
        if k.startswith("module.cluster1.") or k.startswith("module.cluster2."):
            net[k.replace("cluster", "ema_model")] = net[k].clone()
    torch.save({
        "epoch": 10, "iteration": 2000,
        "net_model_state_dict": net,
        "net_optimizer_state_dict": None,
        "linear_model_state_dict": collections.OrderedDict(
            weight=sd["linear_probe.weight"], bias=sd["linear_probe.bias"]),
        "linear_optimizer_state_dict": None,
        "cluster_model_state_dict": collections.OrderedDict(
            clusters=sd["cluster_probe.clusters"]),
        "cluster_optimizer_state_dict": None,
        "best": 21.5,
    }, os.path.join(out, "hp.pth"))

    torch.save(backbone, os.path.join(out, "backbone.pth"))

    vit = ViT(False, 8, 28, dim=384, depth=12, heads=6)
    vit.load_state_dict(backbone)
    vit.eval()
    img = torch.from_numpy(np.array(Image.open(image_path).convert("RGB")))
    x = preprocess(img, resize, "center", 8)[None]
    with torch.no_grad():
        code = project(sd, vit.features(x))
        up = F.interpolate(code, size=x.shape[-2:], mode="bilinear", align_corners=False)
        cos = torch.einsum("bchw,nc->bnhw", F.normalize(up, dim=1),
                           F.normalize(sd["cluster_probe.clusters"], dim=1))
        labels = cos.argmax(1)[0].to(torch.uint8)
    save_safetensors(os.path.join(out, "stego_golden.safetensors"),
                     {"code": code[0].contiguous(), "labels": labels.contiguous()})


if __name__ == "__main__":
    main()
