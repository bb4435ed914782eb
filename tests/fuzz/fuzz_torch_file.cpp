// libFuzzer target: any bytes handed to the .pt reader (zip or legacy, pickle included) must give
// a value tree or an optforge::Error, never a crash, a hang or an out-of-bounds read. Every
// tensor found is checked against its storage and read in full.
#include <cstdint>

#include "formats/torch_file.h"
#include "fuzz_util.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace optforge;
  try {
    TorchFile tf = load_torch_file(MappedFile::from_bytes(data, size, "fuzz.pt"));
    for (const auto& nt : collect_tensors(tf.root)) fuzz::touch(*nt.tensor);
  } catch (const Error&) {}
  return 0;
}
