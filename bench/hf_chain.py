"""The Python chain users run today to turn a sharded metaseq checkpoint into an HF folder, one step
per process (bench/convert.sh times each): consolidate (torch.load of every shard + fairscale's
consolidate_shard_weights + metaseq's glue + torch.save), then transformers' own OPT conversion
script (OPTModel(config).half() + load_state_dict + save_pretrained, safetensors).

usage: hf_chain.py consolidate SHARD_DIR OUT.pt
       hf_chain.py to-hf SINGLETON.pt CONFIG_DIR OUT_DIR
"""
import os
import sys

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # keep the bench's table readable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))


def main():
    if sys.argv[1] == "consolidate":
        import reference_consolidate as rc
        torch.save({"model": rc.consolidate(sys.argv[2])}, sys.argv[3])
    else:
        from transformers.models.opt import convert_opt_original_pytorch_checkpoint_to_pytorch as script
        script.convert_opt_checkpoint(sys.argv[2], sys.argv[4], sys.argv[3])


if __name__ == "__main__":
    main()
