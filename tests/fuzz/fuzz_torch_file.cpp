// libFuzzer target: any bytes handed to the .pt reader (zip or legacy, pickle included) must give
// a value tree or an optforge::Error, never a crash, a hang or an out-of-bounds read. Every
// tensor found is checked against its storage and read in full.
#include <cstdint>

#include "formats/torch_file.h"
#include "io/crc32.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace optforge;
  try {
    TorchFile tf = load_torch_file(MappedFile::from_bytes(data, size, "fuzz.pt"));
    uint32_t c = 0;
    for (const auto& nt : collect_tensors(tf.root)) {
      if (nt.tensor->numel() > (1 << 20)) continue;  // stride-0 giants are legal but slow
      nt.tensor->for_each_chunk([&](const uint8_t* p, size_t n) { c = crc32_update(c, p, n); });
    }
    (void)c;
  } catch (const Error&) {}
  return 0;
}
