// libFuzzer target: a Hugging Face folder's JSON files through read_opt_model(), the way
// `optforge convert/generate/serve` read a model folder. The input is config.json, a NUL, then
// model.safetensors.index.json (no index file when that part is empty). The folder also holds
// real weights written by transformers' save_pretrained (tests/fuzz/data/hf_opt_tiny: one
// model.safetensors and the same model in two shards), so a config or index that names them
// reaches the checks of the config against the weights. Any input gives a model or an
// optforge::Error; an exception of another type (nlohmann::json, std::filesystem) is a bug.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "convert/opt_tensors.h"
#include "fuzz_util.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) std::abort();
}

// A scratch copy of the weights folder, removed at exit (the path is never destroyed, so the
// exit handler may still use it).
const fs::path& folder() {
  static const fs::path& dir = *new fs::path([] {
    std::string tmpl = (fs::temp_directory_path() / "optforge-fuzz-hf-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    fs::path d(tmpl);
    for (const auto& e : fs::directory_iterator(fs::path(OPTFORGE_FUZZ_DATA) / "hf_opt_tiny"))
      if (e.path().extension() == ".safetensors") fs::copy_file(e.path(), d / e.path().filename());
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(folder(), ec);
    });
    return d;
  }());
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace optforge;
  const fs::path& dir = folder();
  auto parts = fuzz::split_nul(data, size, 2);
  write(dir / "config.json", parts[0]);
  const fs::path index = dir / "model.safetensors.index.json";
  if (parts[1].empty())
    fs::remove(index);
  else
    write(index, parts[1]);
  try {
    OptTensors m = read_opt_model(dir.string());
    for (const auto& [name, t] : m.tensors) fuzz::touch(t);
  } catch (const Error&) {}
  return 0;
}
