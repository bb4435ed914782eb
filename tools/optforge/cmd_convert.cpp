// optforge convert: two forms.
//   convert IN OUT                 one file between .pt and .safetensors (format from OUT's name)
//   convert IN -o OUT --to FORMAT  an OPT model from any layout (metaseq, HF folder, safetensors,
//                                  alpa folder) to hf | safetensors | alpa | alpa-tree | metaseq
// --dtype f32|f16|bf16 casts floating-point tensors (round to nearest even, as torch's .to()).
// --quantize int8|int4 (with --to hf or safetensors) stores every matmul weight quantized + scales.
#include <algorithm>
#include <thread>

#include "commands.h"
#include "convert/file_convert.h"
#include "convert/model_convert.h"
#include "util/error.h"

namespace optforge::cli {

void register_convert(CLI::App& app) {
  struct Options {
    std::string in, out, dtype, to, max_shard_size = "5GB", tokenizer, format = "safetensors", quantize = "none";
    int64_t mp = 1, heads = 0;
    int threads = int(std::thread::hardware_concurrency());
  };
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("convert", "Convert a checkpoint: between files, or an OPT model between layouts (--to)");
  cmd->add_option("input", o->in,
                  "Input: a .pt or .safetensors file, a sharded metaseq checkpoint (folder or prefix), an HF folder, "
                  "an alpa numpy folder")
      ->required();
  cmd->add_option("output,-o,--output", o->out, "Output file or folder")->required();
  cmd->add_option("--to", o->to, "Model layout to write: hf, safetensors, alpa, alpa-tree, metaseq");
  cmd->add_option("--dtype", o->dtype, "Cast floating-point tensors: f32, f16 or bf16");
  cmd->add_option("--max-shard-size", o->max_shard_size, "hf: largest weights file (e.g. 5GB, 500MB, 2GiB)")
      ->capture_default_str();
  cmd->add_option("--format", o->format, "hf: weights as safetensors or bin")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "hf: copy vocab.json and merges.txt from this folder (default: built in)");
  cmd->add_option("--mp", o->mp, "metaseq: model-parallel parts")->capture_default_str();
  cmd->add_option("-j,--threads", o->threads, "Threads")->capture_default_str();
  cmd->add_option("--heads", o->heads,
                  "Attention heads, for inputs that do not record it (alpa folders of unpublished sizes)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  cmd->add_option("--quantize", o->quantize,
                  "With --to hf/safetensors: int8 stores every matmul weight as I8 [N, K] plus an F32 [N] "
                  "'<name>_scale' (symmetric per output channel); int4 packs two values a byte, U8 [N, K/2], "
                  "with F16 [N, ceil(K/32)] group scales (docs/formats.md)")
      ->check(CLI::IsMember({"none", "int8", "int4"}))
      ->capture_default_str();
  cmd->callback([o] {
    std::optional<DType> dtype;
    if (!o->dtype.empty()) {
      dtype = dtype_from_name(o->dtype);
      if (!dtype || !is_floating(*dtype)) throw Error("--dtype must be f32, f16 or bf16, got '" + o->dtype + "'");
    }
    if (o->to.empty()) {
      if (o->quantize != "none") throw Error("--quantize needs --to hf or --to safetensors (a model conversion)");
      convert_file(o->in, o->out, FileConvertOptions{dtype});
      return;
    }
    ModelConvertOptions mo;
    auto to = model_format_from_name(o->to);
    if (!to) throw Error("--to must be hf, safetensors, alpa, alpa-tree or metaseq, got '" + o->to + "'");
    if (o->format != "safetensors" && o->format != "bin") throw Error("--format must be safetensors or bin");
    mo.to = *to;
    mo.dtype = dtype;
    mo.quantize = *quantization_from_name(o->quantize);
    mo.hf.safetensors = o->format == "safetensors";
    mo.hf.max_shard_bytes = parse_size(o->max_shard_size);
    mo.hf.tokenizer_dir = o->tokenizer;
    mo.mp = o->mp;
    mo.heads = o->heads;
    mo.threads = std::max(1, o->threads);
    convert_model(o->in, o->out, mo);
  });
}

}  // namespace optforge::cli
