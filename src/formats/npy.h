// numpy's .npy format (what np.save writes): magic, version, a Python-literal header dict with
// descr, fortran_order and shape, then the raw data. Read zero-copy from a map; written streaming.
// .npz is a zip of .npy members, written with the same zip writer as .pt files.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/mmap_file.h"
#include "io/zip_writer.h"
#include "tensor/tensor.h"

namespace optforge {

// Reads an .npy file (any name, e.g. alpa's extension-less files); the tensor views the map.
Tensor load_npy(const std::string& path);
Tensor load_npy(const std::shared_ptr<MappedFile>& file, uint64_t offset, uint64_t size);

// The header for a C-order array of this dtype and shape (bf16 has no numpy dtype: error).
std::string npy_header(DType dtype, const Shape& shape);

// Writes one .npy file atomically.
void save_npy(const std::string& path, const Tensor& t);
// Writes an .npz: a stored zip whose members are "<name>.npy".
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays);

}  // namespace optforge
