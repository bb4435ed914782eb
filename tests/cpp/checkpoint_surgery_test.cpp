// Unit tests of the checkpoint surgery building blocks. The end-to-end checks against fairscale and
// metaseq's logic are in tests/python/test_consolidate.py and test_reshard.py.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "checkpoint/consolidate.h"
#include "checkpoint/fsdp.h"
#include "checkpoint/layout.h"
#include "checkpoint/megatron.h"
#include "checkpoint/producer.h"
#include "checkpoint/reshard.h"
#include "checkpoint/writer.h"
#include "formats/torch_file.h"
#include "io/crc32.h"
#include "opt/random_model.h"
#include "util/error.h"

using namespace optforge;
using namespace optforge::ckpt;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> all_bytes(const Producer& p) {
  std::vector<uint8_t> v(p.size());
  p.read(0, v.data(), v.size());
  return v;
}

// A part tensor over an owned buffer of int16 values (2 bytes, like fp16).
PartTensor make_part(const std::string& name, Shape shape, const std::vector<int16_t>& vals) {
  auto buf = std::make_shared<std::vector<int16_t>>(vals);
  PartTensor t;
  t.name = name;
  t.shape = std::move(shape);
  t.dtype = DType::I16;
  t.bytes = bytes(reinterpret_cast<const uint8_t*>(buf->data()), buf->size() * 2, nullptr, buf);
  return t;
}

std::vector<int16_t> as_i16(const Producer& p) {
  auto b = all_bytes(p);
  std::vector<int16_t> v(b.size() / 2);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

}  // namespace

TEST(CheckpointFsdp, ShardRuleMatchesTorchChunkPlusPadding) {
  // n = 5, W = 4: torch.chunk gives 2, 2, 1 -> paddings 0, 0, 1, 2 (two padded ranks)
  std::vector<uint64_t> pads, lens;
  for (int r = 0; r < 4; ++r) {
    auto s = fsdp_shard(5, 4, r);
    EXPECT_EQ(s.stored(), 2u);
    pads.push_back(s.pad);
    lens.push_back(s.len);
  }
  EXPECT_EQ(pads, (std::vector<uint64_t>{0, 0, 1, 2}));
  EXPECT_EQ(lens, (std::vector<uint64_t>{2, 2, 1, 0}));
  // 175B root flat param per part (docs/spec-checkpoints.md §FSDP sharding and padding): c = 826,071, last padding 36
  auto last = fsdp_shard(102432768, 124, 123);
  EXPECT_EQ(last.stored(), 826071u);
  EXPECT_EQ(last.pad, 36u);
  EXPECT_EQ(fsdp_shard(7, 1, 0).pad, 0u);
  EXPECT_EQ(fsdp_shard(7, 1, 0).len, 7u);
}

TEST(CheckpointLayout, NamesParsedWithOneAnchoredRegex) {
  auto a = parse_checkpoint_name("checkpoint_last-model_part-3-shard17.pt");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->prefix, "checkpoint_last");
  EXPECT_EQ(*a->part, 3);
  EXPECT_EQ(*a->shard, 17);
  auto b = parse_checkpoint_name("reshard.pt");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->prefix, "reshard");
  EXPECT_FALSE(b->part);
  auto c = parse_checkpoint_name("checkpoint_1_6000.pt-model_part-0.pt");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->prefix, "checkpoint_1_6000.pt");
  EXPECT_EQ(*c->part, 0);
  auto d = parse_checkpoint_name("checkpoint_last-shard2.pt");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->part);
  EXPECT_EQ(*d->shard, 2);
  EXPECT_FALSE(parse_checkpoint_name("notes.txt"));
  EXPECT_EQ(clean_fsdp_name("_fsdp_wrapped_module.decoder.layers.0._fsdp_wrapped_module._fpw_module.flat_param_0"),
            "decoder.layers.0.flat_param_0");
}

TEST(CheckpointLayout, MissingShardIsNamed) {
  fs::path dir = fs::temp_directory_path() / "optforge_ckpt_layout_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* n : {"checkpoint_last-model_part-0-shard0.pt", "checkpoint_last-model_part-0-shard2.pt",
                        "checkpoint_last-model_part-1-shard0.pt", "checkpoint_last-model_part-1-shard1.pt",
                        "checkpoint_last-model_part-1-shard2.pt"})
    std::ofstream(dir / n) << "x";
  try {
    find_checkpoint(dir.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint_last-model_part-0-shard1.pt"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(CheckpointProducer, ConcatSliceInterleaveCast) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto p = bytes(buf->data(), 10, nullptr, buf);
  auto c = concat({slice(p, 6, 4), zeros(3), slice(p, 0, 2)});
  EXPECT_EQ(all_bytes(*c), (std::vector<uint8_t>{6, 7, 8, 9, 0, 0, 0, 0, 1}));
  std::vector<uint8_t> mid(4);
  c->read(3, mid.data(), 4);
  EXPECT_EQ(mid, (std::vector<uint8_t>{9, 0, 0, 0}));
  // two 2x3 and 2x2 matrices glued on dim 1 -> 2x5
  auto a = bytes(buf->data(), 6, nullptr, buf), b = bytes(buf->data() + 6, 4, nullptr, buf);
  auto il = interleave(2, {{a, 0, 3, 3}, {b, 0, 2, 2}});
  EXPECT_EQ(all_bytes(*il), (std::vector<uint8_t>{0, 1, 2, 6, 7, 3, 4, 5, 8, 9}));
  std::vector<uint8_t> part(4);
  il->read(4, part.data(), 4);
  EXPECT_EQ(part, (std::vector<uint8_t>{7, 3, 4, 5}));
  // f32 -> f16 with round to nearest even
  auto f = std::make_shared<std::vector<float>>(std::vector<float>{1.0f, 65504.0f, 1e-8f, -2.5f});
  auto h = cast(bytes(reinterpret_cast<const uint8_t*>(f->data()), 16, nullptr, f), DType::F32, DType::F16);
  auto hb = all_bytes(*h);
  ASSERT_EQ(hb.size(), 8u);
  uint16_t v[4];
  std::memcpy(v, hb.data(), 8);
  EXPECT_EQ(v[0], f32_to_f16(1.0f));
  EXPECT_EQ(v[1], 0x7bff);
  EXPECT_EQ(v[2], f32_to_f16(1e-8f));
  EXPECT_EQ(v[3], f32_to_f16(-2.5f));
}

TEST(CheckpointMegatron, RulesInMetaseqOrder) {
  EXPECT_EQ(classify("decoder.layers.0.self_attn.qkv_proj.weight"), TpSplit::FusedColumn);
  EXPECT_EQ(classify("decoder.layers.0.self_attn.out_proj.weight"), TpSplit::Row);
  EXPECT_EQ(classify("decoder.layers.0.self_attn.out_proj.bias"), TpSplit::Replicated);
  EXPECT_EQ(classify("decoder.layers.0.fc1.bias"), TpSplit::Column);
  EXPECT_EQ(classify("decoder.layers.0.fc2.weight"), TpSplit::Row);
  EXPECT_EQ(classify("decoder.layers.0.final_layer_norm.weight"), TpSplit::Replicated);
  EXPECT_EQ(classify("decoder.embed_tokens.weight"), TpSplit::Vocab);
  EXPECT_EQ(classify("decoder.embed_positions.weight"), TpSplit::Replicated);
  EXPECT_EQ(classify("decoder.version"), TpSplit::Replicated);
}

TEST(CheckpointMegatron, QkvBlocksGlueAndResplit) {
  // E = 4, P = 2: part p's qkv rows are [K_p; V_p; Q_p] with 2 rows each, 1 column for brevity.
  // Full K = [0,1,2,3], V = [10..13], Q = [20..23]
  auto p0 = make_part("l.qkv_proj.weight", {6, 1}, {0, 1, 10, 11, 20, 21});
  auto p1 = make_part("l.qkv_proj.weight", {6, 1}, {2, 3, 12, 13, 22, 23});
  std::vector<const PartTensor*> parts{&p0, &p1};
  auto kvq = glue_qkv(parts);
  EXPECT_EQ(as_i16(*kvq[0].bytes), (std::vector<int16_t>{0, 1, 2, 3}));
  EXPECT_EQ(as_i16(*kvq[1].bytes), (std::vector<int16_t>{10, 11, 12, 13}));
  EXPECT_EQ(as_i16(*kvq[2].bytes), (std::vector<int16_t>{20, 21, 22, 23}));
  EXPECT_EQ(kvq[0].shape, (Shape{4, 1}));
  // to 4 parts: part m = [K_m; V_m; Q_m], one row each
  for (int m = 0; m < 4; ++m) {
    auto r = regroup(parts, 4, m);
    EXPECT_EQ(r.shape, (Shape{3, 1}));
    EXPECT_EQ(as_i16(*r.bytes), (std::vector<int16_t>{int16_t(m), int16_t(10 + m), int16_t(20 + m)}));
  }
  // to 1 part: fused [K; V; Q]
  EXPECT_EQ(as_i16(*regroup(parts, 1, 0).bytes), (std::vector<int16_t>{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23}));
  EXPECT_THROW(regroup(parts, 3, 0), Error);
}

TEST(CheckpointMegatron, RowParallelDim1AndReplicaReport) {
  // fc2.weight (E=2 rows, F/P=3 cols) in 2 parts; full is 2 x 6
  auto a = make_part("fc2.weight", {2, 3}, {0, 1, 2, 6, 7, 8});
  auto b = make_part("fc2.weight", {2, 3}, {3, 4, 5, 9, 10, 11});
  std::vector<const PartTensor*> parts{&a, &b};
  EXPECT_EQ(as_i16(*regroup(parts, 1, 0).bytes), (std::vector<int16_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  auto r = regroup(parts, 3, 1);  // columns 2..3
  EXPECT_EQ(r.shape, (Shape{2, 2}));
  EXPECT_EQ(as_i16(*r.bytes), (std::vector<int16_t>{2, 3, 8, 9}));
  auto x = make_part("ln.weight", {3}, {1, 2, 3});
  auto y = make_part("ln.weight", {3}, {1, 5, 3});
  auto diffs = check_replicated({&x, &y});
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0].elements_differing, 1u);
  EXPECT_EQ(diffs[0].part, 1u);
}

TEST(CheckpointWriter, Crc32Combine) {
  std::string a = "hello, ", b = "checkpoint surgery";
  uint32_t whole = crc32((a + b).data(), a.size() + b.size());
  EXPECT_EQ(crc32_combine(crc32(a.data(), a.size()), crc32(b.data(), b.size()), b.size()), whole);
}

TEST(CheckpointWriter, GroupOfFilesReadsBackWithValidCrcs) {
  fs::path dir = fs::temp_directory_path() / "optforge_ckpt_writer_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto data = std::make_shared<std::vector<float>>(1000);
  std::iota(data->begin(), data->end(), 0.0f);
  auto src = bytes(reinterpret_cast<const uint8_t*>(data->data()), 4000, nullptr, data);
  ProducerMap producers;
  std::vector<OutputSpec> specs;
  for (int f = 0; f < 3; ++f) {
    auto model = Value::dict();
    model->set("w",
               Value::of_tensor(produced_tensor(slice(src, uint64_t(f) * 400, 2000), DType::F32, {10, 50}, producers)));
    model->set("h", Value::of_tensor(produced_tensor(cast(slice(src, 0, 400), DType::F32, DType::F16), DType::F16,
                                                     {100}, producers)));
    auto root = Value::dict();
    root->set("model", model);
    specs.push_back({(dir / ("out" + std::to_string(f) + ".pt")).string(), root});
  }
  GroupWriter w(specs, producers, /*unit_bytes=*/128);  // many units per record
  EXPECT_GT(w.unit_count(), 40u);
  w.run(3);
  for (int f = 0; f < 3; ++f) {
    TorchFile tf = load_torch_file((dir / ("out" + std::to_string(f) + ".pt")).string());
    EXPECT_NO_THROW(tf.verify_crc());
    auto m = tf.root->get("model");
    const Tensor& t = *m->get("w")->tensor;
    ASSERT_EQ(t.shape, (Shape{10, 50}));
    const float* p = reinterpret_cast<const float*>(t.data());
    for (int i = 0; i < 500; ++i) ASSERT_EQ(p[i], float(f * 100 + i));
    const Tensor& h = *m->get("h")->tensor;
    EXPECT_EQ(h.dtype, DType::F16);
    EXPECT_EQ(reinterpret_cast<const uint16_t*>(h.data())[7], f32_to_f16(7.0f));
  }
  // Nothing but the outputs: no temporaries left.
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.path().filename().string().find(".tmp-") == std::string::npos;
  EXPECT_EQ(n, 3u);
  fs::remove_all(dir);
}

TEST(CheckpointWriter, FailureLeavesNoOutput) {
  fs::path dir = fs::temp_directory_path() / "optforge_ckpt_writer_fail";
  fs::remove_all(dir);
  fs::create_directories(dir);
  class Failing final : public Producer {
   public:
    uint64_t size() const override { return 4096; }
    void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
      if (off >= 2048) throw Error("input went away", "in.pt", "tensor x");
      static const std::vector<uint8_t> z(4096);
      sink(z.data(), size_t(n));
    }
    void release(uint64_t, uint64_t) const override {}
  };
  ProducerMap producers;
  std::vector<OutputSpec> specs;
  for (int f = 0; f < 2; ++f) {
    auto root = Value::dict();
    ProducerPtr p = f == 1 ? ProducerPtr(std::make_shared<Failing>()) : zeros(4096);
    root->set("x", Value::of_tensor(produced_tensor(p, DType::U8, {4096}, producers)));
    specs.push_back({(dir / ("o" + std::to_string(f) + ".pt")).string(), root});
  }
  {
    GroupWriter w(specs, producers, 1024);
    EXPECT_THROW(w.run(2), Error);
  }
  EXPECT_TRUE(fs::is_empty(dir));  // neither the complete o0.pt nor any temporary
  fs::remove_all(dir);
}

TEST(CheckpointConsolidate, RestoredOrder) {
  std::vector<std::string> names = {"decoder.embed_tokens.weight",
                                    "decoder.embed_positions.weight",
                                    "decoder.layer_norm.weight",
                                    "decoder.layer_norm.bias",
                                    "decoder.layers.0.fc1.weight",
                                    "decoder.layers.1.fc1.weight",
                                    "decoder.version"};
  std::vector<std::string> got;
  for (size_t i : restored_order(names)) got.push_back(names[i]);
  EXPECT_EQ(got, (std::vector<std::string>{"decoder.embed_tokens.weight", "decoder.embed_positions.weight",
                                           "decoder.layers.0.fc1.weight", "decoder.layers.1.fc1.weight",
                                           "decoder.layer_norm.weight", "decoder.layer_norm.bias", "decoder.version"}));
}

TEST(CheckpointReshard, InMemorySingletonToShardsAndBack) {
  // The demo model (generated on the fly) written as MP 2 x FSDP 3 metaseq shards through the
  // library entry point, then consolidated: every tensor must come back bit for bit.
  fs::path dir = fs::temp_directory_path() / "optforge_ckpt_write_sharded";
  fs::remove_all(dir);
  fs::create_directories(dir);
  OptConfig c;
  c.name = "custom";
  c.layers = 2;
  c.embed_dim = 8;
  c.ffn_dim = 32;
  c.heads = 2;
  c.input_dim = 8;
  c.vocab = 16;
  c.max_positions = 5;
  ValuePtr single = random_opt_checkpoint(c, DType::F16, 42);
  ReshardOptions ro;
  ro.outdir = (dir / "sharded").string();
  ro.mp = 2;
  ro.fsdp = 3;
  ro.threads = 2;
  Plan plan = plan_write_sharded(single, ro);
  ExecOptions eo;
  eo.threads = 2;
  execute(plan, eo);
  EXPECT_TRUE(fs::exists(dir / "sharded" / "checkpoint_last-model_part-1-shard2.pt"));
  ConsolidateOptions co;
  co.input = (dir / "sharded").string();
  co.output = (dir / "back.pt").string();
  Plan back = plan_consolidate(co);
  execute(back, eo);
  TorchFile tf = load_torch_file(co.output);
  ValuePtr got = tf.root->get("model"), want = single->get("model");
  ASSERT_EQ(got->entries.size(), want->entries.size());
  for (size_t i = 0; i < want->entries.size(); ++i) {
    EXPECT_EQ(got->entries[i].first->s, want->entries[i].first->s);
    const Tensor &g = *got->entries[i].second->tensor, &w = *want->entries[i].second->tensor;
    ASSERT_EQ(g.shape, w.shape) << want->entries[i].first->s;
    std::vector<uint8_t> wb(w.nbytes());
    tensor_bytes(w, nullptr)->read(0, wb.data(), wb.size());
    EXPECT_EQ(std::memcmp(g.data(), wb.data(), wb.size()), 0) << want->entries[i].first->s;
  }
  fs::remove_all(dir);
}
