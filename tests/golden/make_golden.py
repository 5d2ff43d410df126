#!/usr/bin/python3
"""Writes the golden fixtures the C++ tests compare against.

Run with Debian's PyTorch:  /usr/bin/python3 tests/golden/make_golden.py
Everything is seeded, so reruns reproduce the same files.

The ViT below is an independent re-statement of the official DINO
(facebookresearch/dino vision_transformer.py) and DINOv2
(facebookresearch/dinov2 layers/ and models/vision_transformer.py) forward
passes, including their position-embedding interpolation rules, at a tiny
size (2 blocks, width 64).
"""
import argparse
import collections
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


# ---------------------------------------------------------------- safetensors
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.uint8: "U8", torch.int64: "I64"}


def save_safetensors(path, tensors, metadata=None):
    """The safetensors layout, written by hand (the package is not in Debian)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 \
            else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- preprocessing
def preprocess(img_u8, resize, crop, patch):
    """DESIGN.md section 2: ToTensor, short-side bilinear resize
    (align_corners=False, no antialias), torchvision-style center crop or
    padding to a patch multiple, ImageNet normalization."""
    x = img_u8.permute(2, 0, 1).float().div(255)
    h, w = x.shape[1:]
    short, long = min(h, w), max(h, w)
    new_long = int(resize * long / short)
    nh, nw = (resize, new_long) if h <= w else (new_long, resize)
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False,
                      antialias=False)[0]
    if crop == "center":
        top = int(round((nh - resize) / 2.0))
        left = int(round((nw - resize) / 2.0))
        x = x[:, top:top + resize, left:left + resize]
    x = (x - MEAN) / STD
    if crop == "full":
        ph = (nh + patch - 1) // patch * patch
        pw = (nw + patch - 1) // patch * patch
        x = F.pad(x, (0, pw - nw, 0, ph - nh))
    return x.contiguous()


def make_preprocess_fixture():
    g = torch.Generator().manual_seed(1)
    out = {}
    for name, (h, w, resize, crop) in {
        "landscape_center": (23, 37, 16, "center"),
        "portrait_center": (41, 26, 20, "center"),
        "landscape_full": (23, 37, 16, "full"),
        "half_offset_center": (20, 33, 20, "center"),   # (33-20)/2 = 6.5 -> 6
        "upscale_center": (9, 14, 24, "center"),
    }.items():
        img = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
        out[f"{name}.image"] = img
        out[f"{name}.expected"] = preprocess(img, resize, crop, 8)
        out[f"{name}.resize"] = torch.tensor([resize], dtype=torch.int64)
    save_safetensors(os.path.join(OUT, "preprocess.safetensors"), out)


# ---------------------------------------------------------------- ViT
class Attention(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = torch.nn.Linear(dim, dim * 3, bias=True)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x, dinov2):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if dinov2:
            attn = (q * self.scale) @ k.transpose(-2, -1)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.empty(dim).uniform_(0.2, 1.0))

    def forward(self, x):
        return x * self.gamma


class Block(torch.nn.Module):
    def __init__(self, dim, heads, dinov2):
        super().__init__()
        self.dinov2 = dinov2
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        if dinov2:
            self.ls1 = LayerScale(dim)
            self.ls2 = LayerScale(dim)

    def forward(self, x):
        if self.dinov2:
            x = x + self.ls1(self.attn(self.norm1(x), True))
            return x + self.ls2(self.mlp(self.norm2(x)))
        x = x + self.attn(self.norm1(x), False)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(torch.nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.patch_size = patch
        self.proj = torch.nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class ViT(torch.nn.Module):
    def __init__(self, dinov2, patch, grid, dim=64, depth=2, heads=4, registers=0,
                 offset=0.1, antialias=False):
        super().__init__()
        self.dinov2, self.patch, self.registers = dinov2, patch, registers
        self.offset, self.antialias = offset, antialias
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.randn(1, grid * grid + 1, dim) * 0.5)
        if dinov2:
            self.mask_token = torch.nn.Parameter(torch.zeros(1, dim))
        if registers:
            self.register_tokens = torch.nn.Parameter(torch.randn(1, registers, dim))
        self.blocks = torch.nn.ModuleList([Block(dim, heads, dinov2) for _ in range(depth)])
        self.norm = torch.nn.LayerNorm(dim, eps=1e-6)
        for n, p in self.named_parameters():  # non-trivial norms and biases
            if n.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
                torch.nn.init.uniform_(p, 0.5, 1.5)
            elif n.endswith("bias"):
                torch.nn.init.uniform_(p, -0.2, 0.2)

    def interpolate_pos_encoding(self, x, w, h):
        # As the official code names them, w is the image height and h its
        # width (B, nc, w, h = x.shape).
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch, h // self.patch
        M = int(math.sqrt(N))
        kwargs = {}
        if self.offset:
            kwargs["scale_factor"] = ((w0 + self.offset) / M, (h0 + self.offset) / M)
        else:
            kwargs["size"] = (w0, h0)
        patch_pos_embed = F.interpolate(
            patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic", antialias=self.antialias, **kwargs)
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        if self.dinov2:
            assert w % self.patch == 0 and h % self.patch == 0
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.registers:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    def features(self, x, block=-1):
        """get_intermediate_layers(x, n=1) with the final norm, patch tokens
        only, as D x h x w."""
        B, _, H, W = x.shape
        x = self.prepare_tokens(x)
        last = len(self.blocks) - 1 if block < 0 else block
        for blk in self.blocks[:last + 1]:
            x = blk(x)
        x = self.norm(x)[:, 1 + self.registers:]
        return x.transpose(1, 2).reshape(B, -1, H // self.patch, W // self.patch)


def hf_names(sd, block_renames):
    """Official names -> Hugging Face ViTModel / Dinov2Model names: shared
    embeddings and final norm, q/k/v split out of qkv, and the per-block
    renames given as (official prefix, Hugging Face prefix) pairs."""
    out = {}
    for k, v in sd.items():
        if k in ("cls_token", "mask_token", "register_tokens"):
            out["embeddings." + k] = v
        elif k == "pos_embed":
            out["embeddings.position_embeddings"] = v
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + k.split(".")[-1]] = v
        elif k.startswith("norm."):
            out["layernorm." + k.split(".")[-1]] = v
        else:
            _, i, rest = k.split(".", 2)
            p = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.split(".")[-1]
                for part, t in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                    out[p + f"attention.attention.{part}.{kind}"] = t.clone()
                continue
            for a, b in block_renames:
                if rest.startswith(a):
                    out[p + b + rest[len(a):]] = v
                    break
    return out


def hf_vit_names(sd):
    """facebook/dino-vits8 layout (ViTModel)."""
    out = hf_names(sd, (("attn.proj.", "attention.output.dense."),
                        ("norm1.", "layernorm_before."), ("norm2.", "layernorm_after."),
                        ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense.")))
    out["pooler.dense.weight"] = torch.zeros(4, 4)  # dropped by the loader
    return out


def hf_dinov2_names(sd):
    """facebook/dinov2-small layout (Dinov2Model)."""
    return hf_names(sd, (("attn.proj.", "attention.output.dense."),
                         ("ls1.gamma", "layer_scale1.lambda1"), ("ls2.gamma", "layer_scale2.lambda1"),
                         ("norm1.", "norm1."), ("norm2.", "norm2."),
                         ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2.")))


class Evil:
    """A pickle that would run a shell command if unpickled naively."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def make_model_fixtures():
    models = {
        # name: (model, {input name: (H, W)})
        "dino": (ViT(False, 8, 4), {"native": (32, 32), "square": (48, 48),
                                    "nonsquare": (40, 64), "ragged": (36, 44)}),
        "dinov2": (ViT(True, 14, 5), {"native": (70, 70), "square": (56, 56),
                                      "nonsquare": (42, 70)}),
        "dinov2_reg": (ViT(True, 14, 5, registers=4, offset=0.0, antialias=True),
                       {"native": (70, 70), "square": (56, 56), "nonsquare": (42, 98)}),
    }
    g = torch.Generator().manual_seed(7)
    for name, (model, inputs) in models.items():
        model.eval()
        sd = model.state_dict()  # an OrderedDict carrying _metadata
        golden = {}
        with torch.no_grad():
            for input_name, (h, w) in inputs.items():
                x = torch.randn(1, 3, h, w, generator=g)
                golden[f"{input_name}.input"] = x
                golden[f"{input_name}.features"] = model.features(x)
            golden["square.block0"] = model.features(golden["square.input"], block=0)
        save_safetensors(os.path.join(OUT, f"{name}_golden.safetensors"), golden)
        torch.save(sd, os.path.join(OUT, f"{name}_tiny.pth"))

    dino_sd = models["dino"][0].state_dict()
    half = collections.OrderedDict((k, v.half()) for k, v in dino_sd.items())
    torch.save(half, os.path.join(OUT, "dino_tiny_fp16.pth"))
    bf16 = collections.OrderedDict((k, v.bfloat16()) for k, v in dino_sd.items())
    torch.save(bf16, os.path.join(OUT, "dino_tiny_bf16.pth"))
    save_safetensors(os.path.join(OUT, "dino_tiny_hf.safetensors"), hf_vit_names(dino_sd))
    save_safetensors(os.path.join(OUT, "dinov2_tiny_hf.safetensors"),
                     hf_dinov2_names(models["dinov2"][0].state_dict()))
    save_safetensors(os.path.join(OUT, "dinov2_reg_tiny.safetensors"),
                     dict(models["dinov2_reg"][0].state_dict()))

    # A DINO training checkpoint (main_dino.py layout): the student wrapped in
    # DDP ("module.backbone."), the teacher not ("backbone."), both with the
    # projection head, plus optimizer state, epoch and the argparse Namespace.
    head = {"head.mlp.0.weight": torch.randn(8, 64), "head.last_layer.weight_g": torch.ones(16, 1)}
    teacher = collections.OrderedDict({"backbone." + k: v for k, v in dino_sd.items()})
    teacher.update(head)
    student = collections.OrderedDict({"module.backbone." + k: v * 0 for k, v in dino_sd.items()})
    torch.save({
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {0: {"step": 3, "exp_avg": torch.zeros(2)}},
                      "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_small", patch_size=8, out_dim=65536, lr=5e-4,
                                   data_path="/path/to/imagenet", use_fp16=True),
        "dino_loss": {"center": torch.zeros(1, 16)},
    }, os.path.join(OUT, "dino_tiny_train.pth"))

    torch.save({"weights": torch.zeros(2), "payload": Evil()},
               os.path.join(OUT, "evil_global.pth"))


# ---------------------------------------------------------------- PriMaPs
def primaps_proposals(feat, threshold=0.4, coverage=0.95, max_masks=32):
    """DESIGN.md section 2, steps 1-2, for features D x h x w."""
    D, h, w = feat.shape
    x = feat.reshape(D, -1).T                      # N x D
    unit = F.normalize(x, p=2, dim=1)
    n = x.shape[0]
    free = torch.ones(n, dtype=torch.bool)        # step 1
    history = [int(free.sum())]
    masks, anchors = [], []
    while n - int(free.sum()) < coverage * n and len(masks) < max_masks:
        xf = x[free]
        xc = xf - xf.mean(0, keepdim=True)
        v = torch.linalg.eigh(xc.T @ xc)[1][:, -1]  # step 2a: first PC
        proj = xc @ v
        if proj[torch.argmax(proj.abs())] < 0:      # sign rule
            v = -v
        sim = (unit @ v) / v.norm().clamp_min(1e-12)  # step 2b
        sim[~free] = 0
        anchor = int(torch.argmax(sim))             # first maximum
        s = unit @ unit[anchor]                     # step 2c
        s[~free] = 0
        mx = s.max()
        if mx > 0:
            s[s < threshold * mx] = 0
            s = s / mx
            masks.append(s.reshape(h, w))
            anchors.append(anchor)
            free &= ~(s > 0)                        # step 2d
        history.append(int(free.sum()))
        if len(history) >= 3 and history[-1] == history[-2] == history[-3]:
            break
    return (torch.stack(masks) if masks else torch.zeros(0, h, w)), anchors


def primaps_crf_input(masks, out_h, out_w):
    """Steps 3-5 up to the CRF: median filter, gain, background,
    log-softmax, upsampling, softmax."""
    M, h, w = masks.shape
    padded = F.pad(masks[None], (1, 1, 1, 1), mode="reflect")[0]
    windows = padded.unfold(1, 3, 1).unfold(2, 3, 1).reshape(M, h, w, 9)
    refined = (windows.median(dim=-1).values * 10).clamp(0, 1)        # step 3
    nonzero = refined[refined != 0]
    mean = nonzero.mean() if nonzero.numel() else torch.tensor(1.0)
    background = (mean - refined.sum(0)).clamp(0, 1)                  # step 4
    stacked = torch.cat([background[None], refined])
    logp = F.log_softmax(stacked, dim=0)                              # step 5
    up = F.interpolate(logp[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    return refined, stacked, F.softmax(up, dim=0)


def make_primaps_fixture():
    g = torch.Generator().manual_seed(3)
    out = {}
    # "planted": three clusters in random layout plus noise; "random": the
    # tiny DINO model's features of a random image (a realistic spectrum).
    D, h, w = 24, 6, 7
    centers = torch.randn(3, D, generator=g) * 3
    layout = torch.randint(0, 3, (h, w), generator=g)
    planted = centers[layout].permute(2, 0, 1) + 0.3 * torch.randn(D, h, w, generator=g)
    model = ViT(False, 8, 4)
    model.eval()
    with torch.no_grad():
        real = model.features(torch.randn(1, 3, 80, 96, generator=g))[0]
    for name, feat in (("planted", planted), ("dino", real)):
        masks, anchors = primaps_proposals(feat)
        out_h, out_w = feat.shape[1] * 8, feat.shape[2] * 8
        refined, stacked, probs = primaps_crf_input(masks, out_h, out_w)
        out[f"{name}.features"] = feat.contiguous()
        out[f"{name}.masks"] = masks.contiguous()
        out[f"{name}.anchors"] = torch.tensor(anchors, dtype=torch.int64)
        out[f"{name}.refined"] = refined.contiguous()
        out[f"{name}.with_background"] = stacked.contiguous()
        out[f"{name}.probs"] = probs.contiguous()
    save_safetensors(os.path.join(OUT, "primaps_golden.safetensors"), out)



# ---------------------------------------------------------------- dense CRF
def build_lattice(features):
    """The permutohedral lattice of the dense CRF reference (Kraehenbuehl's
    densecrf, as DESIGN.md section 2 states it) for features N x d, point by
    point in float32: each point's d+1 lattice vertices (`offsets`) and
    barycentric `weights`, and the vertex keys."""
    f32 = np.float32
    n, d = features.shape
    d1 = d + 1
    inv_std = np.sqrt(f32(2) / f32(3)) * f32(d1)
    scale = [inv_std / np.sqrt(f32((i + 1) * (i + 2))) for i in range(d)]
    canonical = [[r if i <= d - r else r - d1 for i in range(d1)] for r in range(d1)]
    down = f32(1) / f32(d1)
    keys = {}
    offsets = np.zeros((n, d1), dtype=np.int64)
    weights = np.zeros((n, d1), dtype=np.float32)
    for p in range(n):
        elevated = [f32(0)] * d1
        total = f32(0)
        for j in range(d, 0, -1):
            cf = features[p, j - 1] * scale[j - 1]
            elevated[j] = total - f32(j) * cf
            total = total + cf
        elevated[0] = total
        rem0 = []
        for i in range(d1):
            v = elevated[i] * down
            up, dn = int(np.ceil(v)) * d1, int(np.floor(v)) * d1
            rem0.append(up if f32(up) - elevated[i] < elevated[i] - f32(dn) else dn)
        sum_rem = sum(rem0) // d1  # an exact multiple of d1
        rank = [0] * d1
        for i in range(d):
            di = elevated[i] - f32(rem0[i])
            for j in range(i + 1, d1):
                if di < elevated[j] - f32(rem0[j]):
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d1):
            if sum_rem > 0 and rank[i] >= d1 - sum_rem:
                rem0[i] -= d1
                rank[i] += sum_rem - d1
            elif sum_rem < 0 and rank[i] < -sum_rem:
                rem0[i] += d1
                rank[i] += d1 + sum_rem
            else:
                rank[i] += sum_rem
        bary = [f32(0)] * (d + 2)
        for i in range(d1):
            v = (elevated[i] - f32(rem0[i])) * down
            bary[d - rank[i]] += v
            bary[d + 1 - rank[i]] -= v
        bary[0] += f32(1) + bary[d + 1]
        for r in range(d1):
            key = tuple(rem0[i] + canonical[r][rank[i]] for i in range(d))
            offsets[p, r] = keys.setdefault(key, len(keys))
            weights[p, r] = bary[r]
    return keys, offsets, weights


def lattice_filter(features, values):
    """The lattice filter, point by point in float32 (the fixtures' exact
    order of sums). features: N x d, values: N x C. Returns N x C."""
    f32 = np.float32
    n, d = features.shape
    d1 = d + 1
    keys, offsets, weights = build_lattice(features)
    m, c = len(keys), values.shape[1]
    lattice = np.zeros((m, c), dtype=np.float32)
    for p in range(n):
        for r in range(d1):
            lattice[offsets[p, r]] += weights[p, r] * values[p]
    key_list = list(keys)
    zero = np.zeros(c, dtype=np.float32)
    for j in range(d1):
        blurred = np.empty_like(lattice)
        for v, key in enumerate(key_list):
            n1 = [k - 1 for k in key]
            n2 = [k + 1 for k in key]
            if j < d:
                n1[j], n2[j] = key[j] + d, key[j] - d
            a = keys.get(tuple(n1))
            b = keys.get(tuple(n2))
            blurred[v] = lattice[v] + f32(0.5) * (
                (lattice[a] if a is not None else zero) + (lattice[b] if b is not None else zero))
        lattice = blurred
    alpha = f32(1) / (f32(1) + f32(2.0 ** -d))
    out = np.zeros((n, c), dtype=np.float32)
    for p in range(n):
        acc = (weights[p, 0] * alpha) * lattice[offsets[p, 0]]
        for r in range(1, d1):
            acc = acc + (weights[p, r] * alpha) * lattice[offsets[p, r]]
        out[p] = acc
    return out


class FastLattice:
    """The same filter with numpy's vectorized sums, for many filterings on
    one image (score_reference.py's CRF): equal to lattice_filter up to the
    order of float32 additions."""

    def __init__(self, features):
        keys, self.offsets, self.weights = build_lattice(features)
        self.d = features.shape[1]
        self.m = len(keys)
        d1 = self.d + 1
        # Each vertex's two neighbours along each of the d+1 directions;
        # index m (a zero row) where the neighbour is not in the lattice.
        self.neighbours = []
        for j in range(d1):
            a = np.full(self.m, self.m, np.int64)
            b = np.full(self.m, self.m, np.int64)
            for v, key in enumerate(keys):
                n1 = [k - 1 for k in key]
                n2 = [k + 1 for k in key]
                if j < self.d:
                    n1[j], n2[j] = key[j] + self.d, key[j] - self.d
                a[v] = keys.get(tuple(n1), self.m)
                b[v] = keys.get(tuple(n2), self.m)
            self.neighbours.append((a, b))

    def __call__(self, values):
        f32 = np.float32
        c = values.shape[1]
        lattice = np.zeros((self.m + 1, c), np.float32)
        np.add.at(lattice, self.offsets.ravel(),
                  (self.weights[:, :, None] * values[:, None, :]).reshape(-1, c))
        for a, b in self.neighbours:
            blurred = lattice[:-1] + f32(0.5) * (lattice[a] + lattice[b])
            lattice = np.vstack([blurred, np.zeros((1, c), np.float32)])
        alpha = f32(1) / (f32(1) + f32(2.0 ** -self.d))
        return np.einsum("nr,nrc->nc", self.weights * alpha,
                         lattice[self.offsets]).astype(np.float32)


def crf_features(image, sxy, srgb=None):
    h, w, _ = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cols = [xs / np.float32(sxy), ys / np.float32(sxy)]
    if srgb is not None:
        cols += [image[:, :, c].astype(np.float32) / np.float32(srgb) for c in range(3)]
    return np.stack(cols, axis=-1).reshape(h * w, -1)


def dense_crf(image, probs, sxy_g=1, w_g=3, sxy_b=67, srgb=3, w_b=4, iterations=10,
              fast=False):
    """Mean field as DESIGN.md section 2: Q = softmax(-U + sum_k w_k n_k
    L_k(n_k Q)). probs: L x H x W. Returns Q in the same layout. `fast`
    filters with FastLattice (the fixtures use the exact order)."""
    labels, h, w = probs.shape
    unary = -np.log(np.clip(probs.reshape(labels, -1).T, 1e-5, 1)).astype(np.float32)
    kernels = []
    for feats, weight in ((crf_features(image, sxy_g), w_g),
                          (crf_features(image, sxy_b, srgb), w_b)):
        filt = FastLattice(feats) if fast else (lambda v, f=feats: lattice_filter(f, v))
        ones = np.ones((feats.shape[0], 1), dtype=np.float32)
        norm = 1 / np.sqrt(filt(ones) + np.float32(1e-20))
        kernels.append((filt, norm, np.float32(weight)))

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    q = softmax(-unary)
    for _ in range(iterations):
        energy = -unary
        for filt, norm, weight in kernels:
            energy = energy + weight * norm * filt(norm * q)
        q = softmax(energy)
    return q.T.reshape(labels, h, w)


def make_crf_fixture():
    """A 24x20 scene of three colour regions with noise, filtered by the
    position and bilateral lattices, and the CRF on 4 labels."""
    rng = np.random.default_rng(5)
    h, w = 20, 24
    ys, xs = np.mgrid[0:h, 0:w]
    region = (xs > 9).astype(int) + ((ys - 12) ** 2 + (xs - 6) ** 2 < 30)
    palette = np.array([[200, 40, 30], [30, 160, 60], [40, 60, 210]])
    image = np.clip(palette[region] + rng.integers(-25, 26, (h, w, 3)), 0, 255).astype(np.uint8)
    values = rng.random((h * w, 3), dtype=np.float32)
    logits = rng.normal(size=(4, h, w)).astype(np.float32)
    logits[region + 1, ys, xs] += 1.5  # labels loosely follow the regions
    probs = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    out = {"image": image, "values": values, "probs": probs.astype(np.float32)}
    out["position.out"] = lattice_filter(crf_features(image, 1), values)
    out["bilateral.out"] = lattice_filter(crf_features(image, 67, 3), values)
    out["bilateral_fine.out"] = lattice_filter(crf_features(image, 3, 10), values)
    out["crf.q"] = dense_crf(image, out["probs"])
    out["crf_fine.q"] = dense_crf(image, out["probs"], sxy_b=3, srgb=10)
    save_safetensors(os.path.join(OUT, "crf_golden.safetensors"),
                     {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()})


if __name__ == "__main__":
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    make_preprocess_fixture()
    make_model_fixtures()
    make_primaps_fixture()
    make_crf_fixture()
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):>9}  {f}")
