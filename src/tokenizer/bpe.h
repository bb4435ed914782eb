// OPT's tokenizer: GPT-2 byte-level BPE over vocab.json + merges.txt, with OPT's conventions
// (`</s>` = 2 is both BOS and EOS, `<pad>` = 1). encode() = regex pre-tokenization, bytes mapped to
// printable codepoints, BPE merges by rank inside each piece, vocab lookup; decode() reverses it.
// Added tokens written in the text ("</s>", "<pad>") are plain text by default (as metaseq
// does), so text can never inject control tokens; set_parse_special(true) turns them into their
// ids as transformers' OPT tokenizer does (what the CLI and the server do unless told not to).
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

// A token that encode() splits out of the text before BPE: HF's "added tokens" (OPT: "</s>" = 2
// and "<pad>" = 1). lstrip/rstrip: it also swallows the whitespace on its left/right.
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false, rstrip = false;
  bool special = true;  // decode(skip_special = true) drops it
};

// What a folder's tokenizer_config.json, special_tokens_map.json and tokenizer.json add to the
// vocab and merges: the added tokens and which of them are BOS, EOS, UNK and PAD.
struct TokenizerConfig {
  std::vector<AddedToken> added;
  std::string bos, eos, unk, pad;  // token strings; empty: keep the default
  bool add_prefix_space = false;   // tokenizer.json's ByteLevel: a space before each text span
  std::string source;              // the file that set them, for messages
};

class Tokenizer {
 public:
  // From `dir`: vocab.json and merges.txt (metaseq's gpt2-vocab.json / gpt2-merges.txt also work),
  // or, when those are absent, tokenizer.json (a byte-level BPE); plus the special tokens of
  // tokenizer_config.json / special_tokens_map.json when present.
  // Throws optforge::Error naming the file when one is missing or malformed, and naming the model
  // type when tokenizer.json holds something other than a byte-level BPE.
  static Tokenizer load(const std::filesystem::path& dir);
  // The copy of data/opt-tokenizer built into the binary; parsed once per process.
  static Tokenizer builtin();
  // From the files' contents; the names are only used in error messages.
  static Tokenizer from_text(std::string_view vocab_json, std::string_view merges_txt,
                             const std::string& vocab_name = "vocab.json",
                             const std::string& merges_name = "merges.txt");
  // From a tokenizer.json's contents alone (its added tokens included; no tokenizer_config.json).
  static Tokenizer from_tokenizer_json(std::string_view text, const std::string& name = "tokenizer.json");

  // Whether encode() turns added tokens written in the text into their ids, as transformers and
  // the servers built on it do, or encodes them as plain text (the default here). Per copy.
  void set_parse_special(bool on) { parse_special_ = on; }

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
  // The special tokens' roles as the tokenizer files name them. eos_id() is only that role (the
  // id </s> has here): where generation stops is the model config's eos_token_id, not this.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Adds `config`'s tokens and roles (before the tokenizer is shared); throws naming config.source.
  void apply(const TokenizerConfig& config);
  std::shared_ptr<Impl> impl_;
  bool parse_special_ = false;
};

}  // namespace optforge
