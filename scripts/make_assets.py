#!/usr/bin/env python3
"""Make the embedded default dataset: a balanced Fashion-MNIST subset in IDX .gz format.

    python3 scripts/make_assets.py [SOURCE_DIR] [--train-per-class 500] [--test-per-class 100]

SOURCE_DIR holds the four standard Fashion-MNIST IDX files (raw or .gz); default
../shared/data/fashion-mnist relative to the repository root. Output goes to
assets/fashion-mnist-small/. The choice is deterministic (the first k images of each class in
file order) and the gzip streams carry no timestamp, so rerunning gives identical bytes.
Standard library only.
"""

import argparse
import gzip
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = 10


def read_idx(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if candidate.endswith(".gz"):
                data = gzip.decompress(data)
            return path, data
    sys.exit(f"error: neither {name} nor {name}.gz in {directory}")


def parse(path, data, ndims):
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + ndims:
        sys.exit(f"error: {path}: magic 0x{magic:08x}, expected 0x{0x800 + ndims:08x}")
    dims = struct.unpack(">" + "I" * ndims, data[4 : 4 + 4 * ndims])
    body = data[4 + 4 * ndims :]
    size = 1
    for d in dims:
        size *= d
    if len(body) != size:
        sys.exit(f"error: {path}: {len(body)} data bytes, expected {size}")
    return dims, body


def subset(directory, split, per_class):
    image_name, label_name = NAMES[split]
    (n, h, w), images = parse(*read_idx(directory, image_name), 3)
    (nl,), labels = parse(*read_idx(directory, label_name), 1)
    if n != nl:
        sys.exit(f"error: {split}: {n} images but {nl} labels")
    taken = [0] * CLASSES
    chosen = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            chosen.append(i)
    if min(taken) < per_class:
        sys.exit(f"error: {split}: a class has fewer than {per_class} images: {taken}")
    size = h * w
    out_images = b"".join(images[i * size : (i + 1) * size] for i in chosen)
    out_labels = bytes(labels[i] for i in chosen)
    header_images = struct.pack(">IIII", 0x803, len(chosen), h, w)
    header_labels = struct.pack(">II", 0x801, len(chosen))
    return (header_images + out_images, header_labels + out_labels)


def write_gz(path, data):
    # mtime=0 and no file name: byte-identical output on every run.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=os.path.join(ROOT, "..", "shared", "data", "fashion-mnist"))
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "fashion-mnist-small"))
    ap.add_argument("--train-per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=100)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = subset(args.source, split, per_class)
        for name, data in zip(NAMES[split], (images, labels)):
            path = os.path.join(args.out, name + ".gz")
            write_gz(path, data)
            total += os.path.getsize(path)
            print(f"{path}: {os.path.getsize(path)} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
