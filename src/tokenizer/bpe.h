// OPT's tokenizer: GPT-2 byte-level BPE over vocab.json + merges.txt, with OPT's conventions
// (`</s>` = 2 is both BOS and EOS, `<pad>` = 1). encode() = regex pre-tokenization, bytes mapped to
// printable codepoints, BPE merges by rank inside each piece, vocab lookup; decode() reverses it.
// Literal special strings such as "</s>" in text are encoded as plain text (as metaseq does), so
// user text can never inject control tokens.
//
// A Tokenizer is cheap to copy (copies share the tables and the merge cache) and safe to use from
// several threads: encode() serialises on the cache's mutex.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optforge {

class Tokenizer {
 public:
  // vocab.json and merges.txt from `dir` (metaseq's gpt2-vocab.json / gpt2-merges.txt also work).
  // Throws optforge::Error naming the file when one is missing or malformed.
  static Tokenizer load(const std::filesystem::path& dir);
  // The copy of data/opt-tokenizer built into the binary; parsed once per process.
  static Tokenizer builtin();
  // From the files' contents; the names are only used in error messages.
  static Tokenizer from_text(std::string_view vocab_json, std::string_view merges_txt,
                             const std::string& vocab_name = "vocab.json",
                             const std::string& merges_name = "merges.txt");

  // Token ids of `text` (any bytes; ill-formed UTF-8 is kept byte for byte), with BOS first.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = true) const;
  // Appends the ids of `text` (no BOS) to `ids`.
  void encode_append(std::string_view text, std::vector<int32_t>& ids) const;

  // The bytes the ids stand for. Ids outside the vocab (e.g. the embedding's padding rows
  // 50265..50271) decode to nothing; special ids (<s> <pad> </s> <unk>) are dropped unless asked.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
  // decode() made valid UTF-8 the way Python's errors="replace" does (what HF returns).
  std::string decode_text(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // The vocab string of `id` (byte-mapped form, e.g. "Ġthe"); empty if the id has none.
  std::string_view id_to_token(int32_t id) const;
  // The raw bytes `id` stands for (" the" for "Ġthe"); empty if the id has none.
  std::string_view token_bytes(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;

  // 1 + the largest id in vocab.json (50265 for OPT; the model's embedding has 50272 rows).
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace optforge
