#!/usr/bin/python3
"""Calls primaps-server from Python with the primaps_serve package.

    PYTHONPATH=build/python examples/python_client.py --server 127.0.0.1:50051 \
        --image photo.jpg --out labels.png

(or after `pip install --no-build-isolation ./python`, without PYTHONPATH).
Prints the mask count and the model that answered, and writes the pseudo
labels as an 8-bit PNG (255 = ignore).
"""
import argparse
import sys

from PIL import Image

from primaps_serve import Client, PrimapsError


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--image", required=True)
    parser.add_argument("--out", help="write the pseudo labels here (PNG)")
    args = parser.parse_args()
    with Client(args.server) as client:
        try:
            result = client.pseudo_label(args.image, detailed=True)
        except PrimapsError as e:
            print(f"PseudoLabel failed: {e.code.name}: {e.message}", file=sys.stderr)
            return 1
    height, width = result.labels.shape
    print(f"{args.image}: {result.mask_count} masks, {width}x{height} labels, "
          f"backbone {result.model.backbone}, head version {result.model.head_version}")
    if args.out:
        Image.fromarray(result.labels).save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
