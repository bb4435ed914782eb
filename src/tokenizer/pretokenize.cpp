#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>

#include "util/error.h"

namespace optforge {
namespace {

// `\s` spelled out as Unicode White_Space, which is what Python's `regex` uses. PCRE2's own `\s`
// also matches U+180E (no longer a space since Unicode 6.3), so it would split differently.
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

struct Regex {
  pcre2_code* code = nullptr;
  bool jit = false;

  Regex() {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    // UCP makes \p{..} use Unicode properties; MATCH_INVALID_UTF lets us match on arbitrary bytes
    // (ill-formed sequences just never match) instead of rejecting the whole subject.
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset, nullptr);
    if (!code) throw Error("cannot compile the GPT-2 pre-tokenizer regex (PCRE2 error " + std::to_string(err) + ")");
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code); }
};

const Regex& regex() {
  static const Regex r;
  return r;
}

struct MatchDataFree {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& pieces) {
  const Regex& re = regex();
  thread_local std::unique_ptr<pcre2_match_data, MatchDataFree> md(pcre2_match_data_create(1, nullptr));
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    // Match against the whole text from `pos`, so the (?!\S) look-ahead sees what follows.
    int rc = re.jit ? pcre2_jit_match(re.code, subject, text.size(), pos, 0, md.get(), nullptr)
                    : pcre2_match(re.code, subject, text.size(), pos, 0, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      pieces.push_back(text.substr(pos));  // only ill-formed bytes are left
      break;
    }
    if (rc < 0) throw Error("pre-tokenizer regex failed (PCRE2 error " + std::to_string(rc) + ")");
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    // Every well-formed character matches some alternative, so a gap is a run of ill-formed bytes.
    if (ov[0] > pos) pieces.push_back(text.substr(pos, ov[0] - pos));
    pieces.push_back(text.substr(ov[0], ov[1] - ov[0]));
    pos = ov[1];
  }
}

}  // namespace optforge
