// libFuzzer target: numpy files. Bytes that start like a zip go through open_any() (numpy's .npz:
// a zip of .npy members; a torch zip is read too), anything else through the .npy reader. Either
// gives tensors inside the file, or an optforge::Error.
#include <cstdint>

#include "formats/any_file.h"
#include "formats/npy.h"
#include "fuzz_util.h"
#include "io/zip_reader.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace optforge;
  try {
    if (ZipReader::looks_like_zip(data, size)) {
      AnyFile f = open_any(MappedFile::from_bytes(data, size, "fuzz.npz"));
      for (const auto& nt : collect_tensors(f.root)) fuzz::touch(*nt.tensor);
    } else {
      fuzz::touch(load_npy(MappedFile::from_bytes(data, size, "fuzz.npy"), 0, size));
    }
  } catch (const Error&) {}
  return 0;
}
