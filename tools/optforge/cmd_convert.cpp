// optforge convert IN OUT: between .pt and .safetensors (format from OUT's extension), with an
// optional --dtype for floating-point tensors (round to nearest even, as torch's .to()).
#include "commands.h"
#include "convert/file_convert.h"
#include "util/error.h"

namespace optforge::cli {

void register_convert(CLI::App& app) {
  struct Options {
    std::string in, out, dtype;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("convert", "Convert a checkpoint file between .pt and .safetensors");
  cmd->add_option("input", o->in, "Input file (.pt zip or legacy, .safetensors)")->required()->check(CLI::ExistingFile);
  cmd->add_option("output,-o,--output", o->out, "Output file; format from its extension (.pt, .safetensors)")->required();
  cmd->add_option("--dtype", o->dtype, "Cast floating-point tensors: f32, f16 or bf16");
  cmd->callback([o] {
    FileConvertOptions opts;
    if (!o->dtype.empty()) {
      opts.dtype = dtype_from_name(o->dtype);
      if (!opts.dtype || !is_floating(*opts.dtype))
        throw Error("--dtype must be f32, f16 or bf16, got '" + o->dtype + "'");
    }
    convert_file(o->in, o->out, opts);
  });
}

}  // namespace optforge::cli
