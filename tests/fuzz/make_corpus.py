"""Seeds the .pt reader's fuzz corpus with small files written by real torch.save (both formats)."""
import collections
import os
import sys
from argparse import Namespace

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
t = torch.arange(12, dtype=torch.float16).reshape(3, 4)
cases = {
    "plain": {"a": t, "b": t.t(), "c": t[1:, 2:]},
    "dtypes": {str(d): torch.ones(3, dtype=d) for d in (torch.float32, torch.bfloat16, torch.int64, torch.bool)},
    "nested": collections.OrderedDict(x=[1, 2.5, "s", None, (True, b"\x00\xff")], y={"z": t}),
    "metaseq": {"cfg": {"model": Namespace(arch="transformer_lm_megatron", decoder_layers=2)},
                "model": {"flat_param_0": torch.zeros(7, dtype=torch.float16)}},
}
for name, obj in cases.items():
    torch.save(obj, os.path.join(out, name + ".pt"))
    torch.save(obj, os.path.join(out, name + "-legacy.pt"), _use_new_zipfile_serialization=False)
