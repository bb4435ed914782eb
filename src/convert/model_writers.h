// Writers of an OptTensors in each layout optforge exports. Every output is complete or absent:
// files go through AtomicFile, folders through AtomicDir.
#pragma once

#include <cstdint>
#include <string>

#include "convert/opt_tensors.h"

namespace optforge {

struct HfWriteOptions {
  bool safetensors = true;                   // false: pytorch_model.bin
  uint64_t max_shard_bytes = 5'000'000'000;  // HF's default "5GB"
  std::string tokenizer_dir;                 // "": the tokenizer built into optforge
};

// An HF folder OPTForCausalLM.from_pretrained loads: config.json, generation_config.json,
// weights (model.decoder.* names, lm_head tied and not stored), sharded with an index when over
// max_shard_bytes, and the tokenizer files.
void write_hf(const OptTensors& m, const std::string& outdir, const HfWriteOptions& o);
// One .safetensors state dict with HF names.
void write_safetensors_state(const OptTensors& m, const std::string& outfile);
// alpa's numpy folder: one np.save file per tensor, no extension, torch [out, in] layout.
void write_alpa_folder(const OptTensors& m, const std::string& outdir);
// alpa's in-memory parameter tree as an .npz of dotted paths (qkv_combined interleaved, kernels
// transposed to [in, out], LayerNorm weight as scale). 350m-style models cannot be expressed.
void write_alpa_tree(const OptTensors& m, const std::string& outfile);
// A metaseq singleton (restored.pt layout): {cfg, model, ...} with decoder.version.
void write_metaseq_singleton(const OptTensors& m, const std::string& outfile);
// The singleton checkpoint value tree written by write_metaseq_singleton (for MP splitting).
ValuePtr metaseq_singleton_root(const OptTensors& m);
// A note on stderr when the config's pad/bos/eos ids differ from OPT's and `layout` (plural, as
// "alpa folders") has nowhere to keep them.
void note_token_ids_not_kept(const OptConfig& c, const char* layout);

// "5GB" (10^9), "500MB", "2GiB" (2^30), or a plain number of bytes.
uint64_t parse_size(const std::string& s);

}  // namespace optforge
