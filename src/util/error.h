// One exception type for every user-facing failure. It carries the context a user needs to act:
// which file, which entry or tensor inside it, and what was expected against what was found.
// `what()` renders all of it as one line.
#pragma once

#include <stdexcept>
#include <string>

namespace optforge {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, std::string file = {}, std::string where = {})
      : std::runtime_error(render(message, file, where)),
        message_(std::move(message)),
        file_(std::move(file)),
        where_(std::move(where)) {}

  const std::string& message() const { return message_; }
  const std::string& file() const { return file_; }
  const std::string& where() const { return where_; }

  // The same error seen from an outer layer that knows more (e.g. the file name).
  Error with_file(const std::string& file) const { return Error(message_, file_.empty() ? file : file_, where_); }

 private:
  static std::string render(const std::string& m, const std::string& f, const std::string& w) {
    std::string s;
    if (!f.empty()) s += f + ": ";
    if (!w.empty()) s += w + ": ";
    return s + m;
  }
  std::string message_, file_, where_;
};

}  // namespace optforge
