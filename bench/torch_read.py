"""The Python baseline for bench/read.sh: torch.load a checkpoint and checksum every tensor."""
import sys
import zlib

import torch


def walk(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from walk(v)


path, mode = sys.argv[1], sys.argv[2]
kwargs = {"mmap": True} if mode == "mmap" else {}
sd = torch.load(path, map_location="cpu", **kwargs)
if mode in ("checksum", "mmap"):
    total = 0
    for t in walk(sd):
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        total ^= zlib.crc32(t.numpy().tobytes() if t.numel() else b"")
    print(total)
