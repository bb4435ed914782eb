// The files this process holds open as inputs (mapped by MappedFile), by identity (device and
// inode, so a symlink or another spelling of the path is the same file). "Inputs are never
// modified" is enforced once, where every output is renamed into place (io/atomic_file): an
// output whose final name is a file still being read from is refused, whatever command wrote it.
#pragma once

#include <sys/types.h>

#include <string>

namespace optforge {

// Counts the open file (device, inode) as an input until the matching release_input_file.
void note_input_file(dev_t dev, ino_t ino);
void release_input_file(dev_t dev, ino_t ino);
// True when `path` exists and is one of the inputs held now.
bool is_input_file(const std::string& path);

}  // namespace optforge
