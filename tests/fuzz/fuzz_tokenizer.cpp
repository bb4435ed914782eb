// libFuzzer target: the tokenizer files and text through the loaded tokenizer. The first byte
// picks how the tokenizer is loaded (one line per loader in kLoaders), the rest is split at NULs
// into the files' contents and, last, a text. Loading gives a tokenizer or an optforge::Error;
// a loaded tokenizer must then encode any bytes, decode any ids, and stream-decode them.
//   'v'  vocab.json \0 merges.txt \0 text      (Tokenizer::from_text)
//   'j'  tokenizer.json \0 text                  (Tokenizer::from_tokenizer_json)
//   'b'  text                                  (the built-in OPT tokenizer; encode/decode must
//                                               give the text back byte for byte)
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/stream_decoder.h"
#include "util/error.h"

namespace {

using optforge::Tokenizer;

struct Loader {
  char mode;
  size_t files;  // pieces before the text
  Tokenizer (*load)(const std::vector<std::string_view>& files);
};

const Loader kLoaders[] = {
    {'v', 2, [](const std::vector<std::string_view>& f) { return Tokenizer::from_text(f[0], f[1]); }},
    {'b', 0, [](const std::vector<std::string_view>&) { return Tokenizer::builtin(); }},
    {'j', 1, [](const std::vector<std::string_view>& f) { return Tokenizer::from_tokenizer_json(f[0]); }},
};

// Ids to decode, taken from the text's bytes: in-vocab ones, out-of-range and negative ones.
std::vector<int32_t> ids_from(std::string_view text) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= text.size(); i += 4) {
    int32_t v;
    std::memcpy(&v, text.data() + i, 4);
    ids.push_back(v % 70000);
  }
  return ids;
}

void exercise(const Tokenizer& tok, std::string_view text, bool check_round_trip) {
  std::vector<int32_t> ids = tok.encode(text, true);
  std::string back = tok.decode(ids, true);
  // Byte-level BPE is lossless: every byte has a token, so decode(encode(x)) == x.
  if (check_round_trip && back != text) std::abort();
  for (int32_t id : ids) (void)tok.id_to_token(id), (void)tok.is_special(id);
  std::vector<int32_t> any = ids_from(text);
  (void)tok.decode_text(any, false);
  optforge::StreamDecoder sd(tok);
  std::string streamed;
  for (int32_t id : any) streamed += sd.push(id);
  streamed += sd.finish();
  if (streamed != tok.decode_text(any, true)) std::abort();  // the stream decoder's promise
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  for (const Loader& l : kLoaders) {
    if (char(data[0]) != l.mode) continue;
    auto parts = optforge::fuzz::split_nul(data + 1, size - 1, l.files + 1);
    std::optional<Tokenizer> tok;
    try {
      tok = l.load(std::vector<std::string_view>(parts.begin(), parts.end() - 1));
    } catch (const optforge::Error&) { return 0; }
    exercise(*tok, parts.back(), l.mode == 'b');
  }
  return 0;
}
