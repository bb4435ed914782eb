// optforge demo-model -o OUT.pt: the built-in default model. A deterministic random OPT of a
// published shape (or a custom one), written as a metaseq singleton checkpoint by our own writer.
#include <cstdio>

#include <algorithm>
#include <thread>

#include "checkpoint/reshard.h"
#include "commands.h"
#include "formats/torch_file.h"
#include "opt/random_model.h"
#include "util/error.h"
#include "util/human.h"

namespace optforge::cli {

void register_demo_model(CLI::App& app) {
  struct Options {
    std::string out, shape = "125m", dtype = "f16";
    uint64_t seed = 0;
    int64_t mp = 0, fsdp = 0;
    int64_t layers = 0, embed_dim = 0, heads = 0, ffn_dim = 0, input_dim = 0, vocab = 0, positions = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "demo-model", "Write a deterministic random OPT checkpoint: a metaseq singleton, or sharded (--mp/--fsdp)");
  cmd->add_option("-o,--output", o->out, "Output .pt file (a folder with --mp/--fsdp)")->required();
  cmd->add_option("--mp", o->mp, "Write metaseq's raw sharded layout with this many model-parallel parts");
  cmd->add_option("--fsdp", o->fsdp, "... and this many FSDP shards per part");
  std::string shapes;
  for (const auto& n : published_opt_names()) shapes += (shapes.empty() ? "" : ", ") + n;
  cmd->add_option("--shape", o->shape, "Published OPT shape: " + shapes)->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "f16, bf16 or f32")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Override: number of layers");
  cmd->add_option("--embed-dim", o->embed_dim, "Override: hidden size");
  cmd->add_option("--heads", o->heads, "Override: attention heads");
  cmd->add_option("--ffn-dim", o->ffn_dim, "Override: FFN width (default 4 x hidden)");
  cmd->add_option("--input-dim", o->input_dim, "Override: embedding width (350m-style projections when != hidden)");
  cmd->add_option("--vocab", o->vocab, "Override: vocabulary rows");
  cmd->add_option("--positions", o->positions, "Override: max positions");
  cmd->callback([o] {
    auto c = published_opt_config(o->shape);
    if (!c) throw Error("unknown --shape '" + o->shape + "'");
    if (o->layers) c->layers = o->layers;
    if (o->embed_dim) {
      c->embed_dim = o->embed_dim;
      c->ffn_dim = 4 * o->embed_dim;
      if (c->pre_ln) c->input_dim = o->embed_dim;
    }
    if (o->heads) c->heads = o->heads;
    if (o->ffn_dim) c->ffn_dim = o->ffn_dim;
    if (o->input_dim) c->input_dim = o->input_dim;
    if (o->vocab) c->vocab = o->vocab;
    if (o->positions) c->max_positions = o->positions;
    if (o->layers || o->embed_dim || o->heads || o->ffn_dim || o->input_dim || o->vocab || o->positions)
      c->name = "custom";
    auto dtype = dtype_from_name(o->dtype);
    if (!dtype) throw Error("unknown --dtype '" + o->dtype + "'");
    ValuePtr model = random_opt_checkpoint(*c, *dtype, o->seed);
    if (o->mp || o->fsdp) {  // the trainer's layout: OUT/checkpoint_last-model_part-K-shardR.pt
      ckpt::ReshardOptions ro;
      ro.outdir = o->out;
      ro.mp = std::max<int64_t>(1, o->mp);
      ro.fsdp = std::max<int64_t>(1, o->fsdp);
      ro.threads = int(std::max(1u, std::thread::hardware_concurrency()));
      ckpt::Plan plan = ckpt::plan_write_sharded(model, ro);
      ckpt::ExecOptions eo;
      eo.threads = ro.threads;
      eo.out = stderr;
      ckpt::execute(plan, eo);
    } else {
      save_torch_file(o->out, model);
    }
    std::printf("wrote %s: OPT-%s shape, %lld parameters, %s\n", o->out.c_str(), c->name.c_str(),
                static_cast<long long>(c->parameter_count()),
                human_bytes(uint64_t(c->parameter_count()) * dtype_size(*dtype)).c_str());
  });
}

}  // namespace optforge::cli
