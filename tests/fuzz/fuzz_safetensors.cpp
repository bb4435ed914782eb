// libFuzzer target: any bytes handed to the safetensors reader (8-byte header length, JSON
// header, data) must give tensors that lie inside the data region, or an optforge::Error.
#include <cstdint>

#include "formats/safetensors.h"
#include "fuzz_util.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace optforge;
  try {
    SafetensorsFile sf = load_safetensors(MappedFile::from_bytes(data, size, "fuzz.safetensors"));
    for (const auto& [name, t] : sf.tensors) fuzz::touch(t);
  } catch (const Error&) {}
  return 0;
}
