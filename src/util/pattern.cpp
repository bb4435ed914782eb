#include "util/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"

namespace optforge {

struct Pattern::Impl {
  pcre2_code* code = nullptr;
};

Pattern::Pattern(const char* pattern) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED, &err, &offset, nullptr);
  if (!impl_->code)
    throw Error("internal: pattern '" + std::string(pattern) + "' does not compile (PCRE2 error " +
                std::to_string(err) + ")");
}

Pattern::~Pattern() { pcre2_code_free(impl_->code); }

std::optional<std::vector<std::optional<std::string>>> Pattern::full_match(const std::string& s) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (!md) throw Error("out of memory matching a name");
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr);
  std::optional<std::vector<std::optional<std::string>>> out;
  if (rc > 0) {
    uint32_t groups = 0;
    pcre2_pattern_info(impl_->code, PCRE2_INFO_CAPTURECOUNT, &groups);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.emplace();
    for (uint32_t g = 1; g <= groups; ++g) {
      if (int(g) >= rc || ov[2 * g] == PCRE2_UNSET)
        out->push_back(std::nullopt);
      else
        out->push_back(s.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
    }
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace optforge
