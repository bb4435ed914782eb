#include "tokenizer/added_tokens.h"

#include "tokenizer/utf8.h"

namespace optforge {
namespace {

// Unicode White_Space: what Rust's char::is_whitespace (the `tokenizers` library) strips.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string_view strip_left(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    Utf8Step st = utf8_step(s, pos);
    if (st.kind != Utf8Step::Char || !is_white_space(st.cp)) break;
    pos += st.len;
  }
  return s.substr(pos);
}

std::string_view strip_right(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;  // back up to the first byte of the last character
    while (start > 0 && end - start < 4 && (uint8_t(s[start]) & 0xc0) == 0x80) --start;
    Utf8Step st = utf8_step(s, start);
    if (st.kind != Utf8Step::Char || start + st.len != end || !is_white_space(st.cp)) break;
    end = start;
  }
  return s.substr(0, end);
}

}  // namespace

void split_at_added_tokens(std::string_view text, const std::vector<AddedToken>& added, std::vector<TextSpan>& out) {
  // next[k]: where added[k] next occurs at or after `pos` (npos: nowhere); refreshed lazily.
  std::vector<size_t> next(added.size());
  for (size_t k = 0; k < added.size(); ++k)
    next[k] = added[k].content.empty() ? std::string_view::npos : text.find(added[k].content);
  size_t pos = 0;
  bool strip_next = false;  // the previous token has rstrip
  auto push_text = [&](std::string_view s) {
    if (!s.empty()) out.push_back({s, -1});
  };
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_k = 0;
    for (size_t k = 0; k < added.size(); ++k) {
      const std::string& c = added[k].content;
      if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(c, pos);
      if (next[k] < best || (next[k] == best && c.size() > added[best_k].content.size())) best = next[k], best_k = k;
    }
    std::string_view before = text.substr(pos, best == std::string_view::npos ? text.size() - pos : best - pos);
    if (strip_next) before = strip_left(before);
    if (best == std::string_view::npos) {
      push_text(before);
      return;
    }
    const AddedToken& t = added[best_k];
    push_text(t.lstrip ? strip_right(before) : before);
    out.push_back({{}, t.id});
    strip_next = t.rstrip;
    pos = best + t.content.size();
  }
}

}  // namespace optforge
