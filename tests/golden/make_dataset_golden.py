#!/usr/bin/python3
"""Writes miniature datasets in the official layouts and what the reference
makes of them: tests/golden/fixtures/datasets/.

  <dataset>/...        Cityscapes (leftImg8bit/, gtFine/), COCO-Stuff
                       (curated/ list, images/, annotations/) and Potsdam
                       (imgs/*.mat, gt/*.mat, split lists; .mat written with
                       scipy.io.savemat like the published files)
  expected/<dataset>/  per image: <stem>.png, the label map after the
                       reference's mapping (Cityscapes IdsToTrainIds,
                       COCO-Stuff fine_to_coarse, Potsdam 6-to-3), and for
                       Potsdam <stem>_image.png, the RGB image as the
                       reference's to_pil_image makes it

The mappings below restate the reference's datasets/*.py and
primaps_modules/transforms.py. Run with Debian's python3-pil, python3-scipy:
  /usr/bin/python3 tests/golden/make_dataset_golden.py
"""
import os
import shutil

import numpy as np
import scipy.io
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "datasets")

COCO_FINE_TO_COARSE = [
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    6, 6, 6, 6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5,
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 17, 17, 22, 20, 20, 22, 15, 25, 16, 13,
    12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13, 22, 26, 14, 14,
    15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17, 25, 16, 21, 17, 22, 16,
    21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23, 20, 21, 24, 15, 24, 22, 25,
    15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18, 26, 26, 19, 19, 24]
POTSDAM_SIX_TO_THREE = {0: 0, 4: 0, 1: 1, 5: 1, 2: 2, 3: 2}


def cityscapes_train_ids(ids):
    gt = ids.astype(np.int64) - 7
    gt[gt > 26] = 255
    gt[gt < 0] = 255
    return gt.astype(np.uint8)


def coco_coarse(fine):
    coarse = np.zeros_like(fine, dtype=np.int64)
    for f, c in enumerate(COCO_FINE_TO_COARSE):
        coarse[fine == f] = c
    coarse[fine == 255] = 255
    return coarse.astype(np.uint8)


def potsdam_coarse(six):
    out = np.full(six.shape, 255, np.int64)
    for f, c in POTSDAM_SIX_TO_THREE.items():
        out[six == f] = c
    return out.astype(np.uint8)


def photo(rng, h, w):
    return rng.randint(0, 256, (h, w, 3)).astype(np.uint8)


def save_png(array, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def cityscapes(rng):
    root = os.path.join(ROOT, "cityscapes")
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for city in cities:
            for n in range(2):
                stem = f"{city}_{n:06d}_000019"
                h, w = 12, 20
                save_png(photo(rng, h, w), f"{root}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
                ids = rng.randint(0, 34, (h, w)).astype(np.uint8)
                ids.flat[:34] = np.arange(34)  # every official id once
                save_png(ids, f"{root}/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
                save_png(cityscapes_train_ids(ids), f"{ROOT}/expected/cityscapes_{split}/{stem}.png")


def cocostuff(rng):
    root = os.path.join(ROOT, "cocostuff")
    for split in ("train", "val"):
        ids = [f"{split}_{n:012d}" for n in range(3)]
        os.makedirs(f"{root}/curated/{split}2017", exist_ok=True)
        # CRLF line ends and a blank line: lists made on other systems.
        with open(f"{root}/curated/{split}2017/Coco164kFull_Stuff_Coarse_7.txt", "w", newline="") as f:
            f.write("\r\n".join(ids) + "\r\n\r\n")
        for i, stem in enumerate(ids):
            h, w = 10 + i, 16
            os.makedirs(f"{root}/images/{split}2017", exist_ok=True)
            Image.fromarray(photo(rng, h, w)).save(f"{root}/images/{split}2017/{stem}.jpg", quality=90)
            fine = rng.randint(0, 182, (h, w)).astype(np.uint8)
            fine[0, :] = 255
            fine.flat[16:16 + 144] = np.arange(144)
            save_png(fine, f"{root}/annotations/{split}2017/{stem}.png")
            save_png(coco_coarse(fine), f"{ROOT}/expected/cocostuff27_{split}/{stem}.png")


def potsdam(rng):
    root = os.path.join(ROOT, "potsdam")
    os.makedirs(f"{root}/imgs", exist_ok=True)
    os.makedirs(f"{root}/gt", exist_ok=True)
    lists = {"labelled_train.txt": ["0_1_1", "0_1_2"], "labelled_test.txt": ["3_4_5"],
             "unlabelled_train.txt": ["7_0_0"]}
    for list_name, ids in lists.items():
        with open(f"{root}/{list_name}", "w") as f:
            f.write("\n".join(ids) + "\n")
        for n, stem in enumerate(ids):
            h, w = 9, 14
            rgbi = rng.randint(0, 256, (h, w, 4)).astype(np.uint8)
            img = rgbi
            if stem == "0_1_2":  # a float image in [0, 1]: to_pil_image scales it
                img = (rgbi / 255.0).astype(np.float32)
            scipy.io.savemat(f"{root}/imgs/{stem}.mat", {"img": img})
            # to_pil_image(torch.from_numpy(img).permute(2, 0, 1)[:3])
            rgb = img[..., :3]
            if rgb.dtype != np.uint8:
                rgb = (rgb * np.float32(255)).astype(np.uint8)
            split = "unlabelled_train" if list_name.startswith("unlabelled") else (
                "train" if list_name == "labelled_train.txt" else "val")
            save_png(rgb, f"{ROOT}/expected/potsdam3_{split}/{stem}_image.png")
            if list_name.startswith("unlabelled"):
                continue
            gt = rng.randint(0, 6, (h, w)).astype(np.uint8)
            gt[0, 0] = 255
            scipy.io.savemat(f"{root}/gt/{stem}.mat", {"gt": gt})
            save_png(potsdam_coarse(gt), f"{ROOT}/expected/potsdam3_{split}/{stem}.png")


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    rng = np.random.RandomState(18)
    cityscapes(rng)
    cocostuff(rng)
    potsdam(rng)
    print("wrote", ROOT)


if __name__ == "__main__":
    main()
