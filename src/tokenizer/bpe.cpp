#include "tokenizer/bpe.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_map>

#include "io/mmap_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/embedded_data.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace optforge {
namespace {

// Lets the string-keyed maps be searched with a string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class T>
using StringMap = std::unordered_map<std::string, T, StringHash, std::equal_to<>>;

struct Merge {
  int32_t rank;
  int32_t result;  // symbol number of the merged string
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Pieces longer than this are encoded without caching: they are rare and would bloat the cache.
constexpr size_t kMaxCachedPiece = 256;
// Past this many distinct pieces the cache starts over, bounding memory on endless input.
constexpr size_t kMaxCacheEntries = 1 << 20;

}  // namespace

struct Tokenizer::Impl {
  // Vocab, indexed by id; ids that vocab.json skips have empty strings.
  std::vector<std::string> tokens, bytes;
  std::vector<uint8_t> special;
  StringMap<int32_t> token_ids;
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  std::vector<AddedToken> added;  // split out of the text before BPE (when parsing specials)
  bool add_prefix_space = false;  // tokenizer.json's ByteLevel: " " before each text span

  // BPE runs on symbol numbers. Every vocab string and every merge result gets one; a merge
  // result missing from the vocab (not the case for OPT's files) ends up as unk.
  std::vector<int32_t> symbol_vocab_id;
  std::array<int32_t, 256> byte_symbol{};
  std::unordered_map<uint64_t, Merge> merges;

  // Everything below is mutable state of encode(), guarded by `mu`.
  std::mutex mu;
  StringMap<std::pair<uint32_t, uint32_t>> cache;  // piece -> (offset, count) in cache_ids
  std::vector<int32_t> cache_ids;
  std::vector<std::string_view> pieces;
  std::vector<TextSpan> spans;
  std::string prefixed;
  struct Sym {
    int32_t id, prev, next;  // id -1: merged into its left neighbour
  };
  std::vector<Sym> syms;
  std::vector<std::pair<int32_t, int32_t>> heap;  // (rank, left symbol index), min first

  void parse_vocab(std::string_view json, const std::string& name);
  void add_token(std::string token, int64_t id, const std::string& name);
  void bpe(std::string_view piece, std::vector<int32_t>& out);
  void encode_piece(std::string_view piece, std::vector<int32_t>& out);
  void encode_text(std::string_view text, std::vector<int32_t>& out);
  int32_t id_of(const std::string& token, const std::string& role, const std::string& source) const;
};

// One span of text without added tokens: regex pieces, then BPE on each.
void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) {
  if (add_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed.assign(" ").append(text);
    text = prefixed;
  }
  pieces.clear();
  pretokenize(text, pieces);
  for (std::string_view piece : pieces) encode_piece(piece, out);
}

int32_t Tokenizer::Impl::id_of(const std::string& token, const std::string& role, const std::string& source) const {
  for (const auto& a : added)
    if (a.content == token && a.id >= 0) return a.id;
  auto it = token_ids.find(token);
  if (it == token_ids.end())
    throw Error(role + " \"" + token + "\" is neither in the vocabulary nor an added token", source);
  return it->second;
}

void Tokenizer::Impl::add_token(std::string token, int64_t id64, const std::string& name) {
  constexpr int64_t kMaxId = 1 << 24;
  if (id64 < 0 || id64 >= kMaxId)
    throw Error("id must be an integer in [0, 2^24), got " + std::to_string(id64), name, "entry \"" + token + "\"");
  auto id = int32_t(id64);
  if (size_t(id) >= tokens.size()) tokens.resize(id + 1), bytes.resize(id + 1);
  // The bytes behind the token: undo the byte-to-unicode map (specials like "</s>" are ASCII and
  // map to themselves; anything unmapped is kept as its UTF-8).
  std::string& b = bytes[id];
  b.clear();
  for (size_t pos = 0; pos < token.size();) {
    Utf8Step step = utf8_step(token, pos);
    int byte = step.kind == Utf8Step::Char ? codepoint_to_byte(step.cp) : -1;
    if (byte >= 0)
      b += char(byte);
    else
      b.append(token, pos, step.len);
    pos += step.len;
  }
  token_ids[token] = id;
  tokens[id] = std::move(token);
}

// vocab.json is one flat object {token: id}. A SAX pass fills the tables directly, about twice
// as fast as building the JSON document first (this is most of the CLI's start-up time).
void Tokenizer::Impl::parse_vocab(std::string_view json, const std::string& name) {
  using Json = nlohmann::json;
  struct Sax : nlohmann::json_sax<Json> {
    Impl& t;
    const std::string& name;
    int depth = 0;
    std::string last_key, error, where;
    Sax(Impl& t, const std::string& name) : t(t), name(name) {}

    bool reject() {  // any value that is not an integer id
      error = depth == 0 ? "expected a JSON object {token: id}" : "id must be an integer";
      where = depth == 0 ? "" : "entry \"" + last_key + "\"";
      return false;
    }
    bool null() override { return reject(); }
    bool boolean(bool) override { return reject(); }
    bool number_float(number_float_t, const string_t&) override { return reject(); }
    bool string(string_t&) override { return reject(); }
    bool binary(binary_t&) override { return reject(); }
    bool start_array(std::size_t) override { return reject(); }
    bool end_array() override { return false; }
    bool start_object(std::size_t) override { return depth++ == 0 || reject(); }
    bool end_object() override { return --depth, true; }
    bool key(string_t& k) override { return last_key = std::move(k), true; }
    bool number_integer(number_integer_t v) override {
      return depth == 1 ? t.add_token(last_key, v, name), true : reject();
    }
    bool number_unsigned(number_unsigned_t v) override {
      return depth == 1 ? t.add_token(last_key, int64_t(std::min<number_unsigned_t>(v, INT64_MAX)), name),
             true       : reject();
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
      error = std::string("not valid JSON: ") + e.what();
      return false;
    }
  } sax(*this, name);
  token_ids.reserve(64 * 1024);
  if (!Json::sax_parse(json.begin(), json.end(), &sax) && !sax.error.empty()) throw Error(sax.error, name, sax.where);
  if (tokens.empty()) throw Error("expected a non-empty JSON object {token: id}", name);
}

// Repeatedly merges the adjacent pair with the lowest rank, leftmost first. HF's slow tokenizer
// instead merges every occurrence of the best pair per round; the two agree whenever each merge's
// parts come from earlier merges (true of GPT-2's files, checked by a unit test), because a merge
// can then never create a pair that outranks the one being applied.
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) {
  const int32_t n = int32_t(piece.size());
  syms.resize(n);
  for (int32_t i = 0; i < n; ++i) syms[i] = {byte_symbol[uint8_t(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};

  heap.clear();
  auto by_rank = std::greater<>();
  auto push_pair = [&](int32_t i) {
    int32_t j = syms[i].next;
    if (j < 0) return;
    auto it = merges.find(pair_key(syms[i].id, syms[j].id));
    if (it == merges.end()) return;
    heap.emplace_back(it->second.rank, i);
    std::push_heap(heap.begin(), heap.end(), by_rank);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    auto [rank, i] = heap.front();
    std::pop_heap(heap.begin(), heap.end(), by_rank);
    heap.pop_back();
    // Entries go stale when a neighbour merges; re-check that this pair still has this rank.
    if (syms[i].id < 0 || syms[i].next < 0) continue;
    int32_t j = syms[i].next;
    auto it = merges.find(pair_key(syms[i].id, syms[j].id));
    if (it == merges.end() || it->second.rank != rank) continue;
    syms[i].id = it->second.result;
    syms[j].id = -1;
    syms[i].next = syms[j].next;
    if (syms[j].next >= 0) syms[syms[j].next].prev = i;
    if (syms[i].prev >= 0) push_pair(syms[i].prev);
    push_pair(i);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next) out.push_back(symbol_vocab_id[syms[i].id]);
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) {
  if (piece.size() == 1) {
    out.push_back(symbol_vocab_id[byte_symbol[uint8_t(piece[0])]]);
    return;
  }
  if (piece.size() > kMaxCachedPiece) return bpe(piece, out);
  if (auto it = cache.find(piece); it != cache.end()) {
    auto [offset, count] = it->second;
    out.insert(out.end(), cache_ids.begin() + offset, cache_ids.begin() + offset + count);
    return;
  }
  size_t start = out.size();
  bpe(piece, out);
  if (cache.size() >= kMaxCacheEntries) cache.clear(), cache_ids.clear();
  cache.emplace(std::string(piece), std::pair{uint32_t(cache_ids.size()), uint32_t(out.size() - start)});
  cache_ids.insert(cache_ids.end(), out.begin() + start, out.end());
}

Tokenizer Tokenizer::from_text(std::string_view vocab_json, std::string_view merges_txt, const std::string& vocab_name,
                               const std::string& merges_name) {
  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;

  t.parse_vocab(vocab_json, vocab_name);
  auto find = [&](std::string_view s) -> int32_t {
    auto it = t.token_ids.find(s);
    return it == t.token_ids.end() ? -1 : it->second;
  };
  // OPT (fairseq order) has </s> <pad> <unk>; a plain GPT-2 vocab only has <|endoftext|>.
  t.eos = t.bos = find("</s>") >= 0 ? find("</s>") : find("<|endoftext|>");
  if (t.bos < 0) throw Error("vocab has neither \"</s>\" nor \"<|endoftext|>\"", vocab_name);
  t.pad = find("<pad>") >= 0 ? find("<pad>") : t.eos;
  t.unk = find("<unk>") >= 0 ? find("<unk>") : t.eos;
  t.special.assign(t.tokens.size(), 0);
  for (int32_t id : {find("<s>"), t.pad, t.bos, t.unk})
    if (id >= 0) t.special[id] = 1;
  // What transformers' OPT tokenizer (and GPT-2's) splits out of text: its bos/eos/unk token
  // ("</s>"; "<|endoftext|>" for GPT-2) and its pad token "<pad>". "<s>" and "<unk>" are not.
  t.added.push_back({t.tokens[t.bos], t.bos});
  if (t.pad != t.bos) t.added.push_back({t.tokens[t.pad], t.pad});

  // Symbol numbers: a vocab string's is its id; other strings (merge results a custom vocab
  // lacks) get numbers past the vocab and come out as unk.
  t.symbol_vocab_id.resize(t.tokens.size());
  std::iota(t.symbol_vocab_id.begin(), t.symbol_vocab_id.end(), 0);
  StringMap<int32_t> extra_symbols;
  auto intern = [&](std::string_view s) {
    if (int32_t id = find(s); id >= 0) return id;
    auto [it, inserted] = extra_symbols.try_emplace(std::string(s), int32_t(t.symbol_vocab_id.size()));
    if (inserted) t.symbol_vocab_id.push_back(t.unk);
    return it->second;
  };
  for (int b = 0; b < 256; ++b) {
    const std::string& s = byte_symbols_utf8()[b];
    if (find(s) < 0) throw Error("byte " + std::to_string(b) + " has no token (\"" + s + "\")", vocab_name);
    t.byte_symbol[b] = intern(s);
  }

  t.merges.reserve(64 * 1024);
  std::string joined;
  int32_t rank = 0;
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_txt.size();) {
    size_t end = std::min(merges_txt.find('\n', pos), merges_txt.size());
    std::string_view line = merges_txt.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      throw Error("expected two symbols separated by one space, got \"" + std::string(line) + "\"", merges_name,
                  "line " + std::to_string(line_no));
    std::string_view a = line.substr(0, space), b = line.substr(space + 1);
    int32_t sa = intern(a), sb = intern(b);
    joined.assign(a).append(b);
    int32_t merged = intern(joined);
    t.merges.insert_or_assign(pair_key(sa, sb), Merge{rank++, merged});  // a repeated rule: last wins, as in HF
  }
  if (rank == 0) throw Error("no merge rules", merges_name);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw Error("not a directory (expected vocab.json and merges.txt, or tokenizer.json, in it)", dir.string());
  auto pick = [&](const char* name, const char* metaseq_name) {
    auto p = dir / name;
    return fs::exists(p) || !fs::exists(dir / metaseq_name) ? p : dir / metaseq_name;
  };
  auto vocab_path = pick("vocab.json", "gpt2-vocab.json"), merges_path = pick("merges.txt", "gpt2-merges.txt");
  TokenizerConfig config;
  std::optional<Tokenizer> tok;
  if (!fs::exists(vocab_path) && !fs::exists(merges_path) && fs::exists(dir / "tokenizer.json")) {
    TokenizerJson tj = read_tokenizer_json(dir / "tokenizer.json", config);
    const std::string name = (dir / "tokenizer.json").string();
    tok = from_text(tj.vocab_json, tj.merges_txt, name + " (model.vocab)", name + " (model.merges)");
  } else {
    tok = from_text(read_text_file(vocab_path.string()), read_text_file(merges_path.string()), vocab_path.string(),
                    merges_path.string());
  }
  read_special_token_files(dir, config);
  if (!config.source.empty()) tok->apply(config);
  return *tok;
}

Tokenizer Tokenizer::from_tokenizer_json(std::string_view text, const std::string& name) {
  TokenizerConfig config;
  TokenizerJson tj = parse_tokenizer_json(text, name, config);
  Tokenizer tok = from_text(tj.vocab_json, tj.merges_txt, name + " (model.vocab)", name + " (model.merges)");
  if (!config.source.empty()) tok.apply(config);
  return tok;
}

void Tokenizer::apply(const TokenizerConfig& c) {
  Impl& t = *impl_;
  t.add_prefix_space = c.add_prefix_space;
  // The configured added tokens replace the defaults; each gets its id from the files or the vocab.
  std::vector<AddedToken> added = c.added;
  // Ids past the BPE vocabulary are the added tokens' own: they follow it (as transformers
  // appends them), so one far beyond it is a broken file, not a reason to allocate.
  const size_t id_limit = t.tokens.size() + added.size();
  for (auto& a : added) {
    if (a.id < 0) a.id = t.id_of(a.content, "added token", c.source);
    if (size_t(a.id) >= id_limit)
      throw Error("added token '" + a.content + "' has id " + std::to_string(a.id) + ", beyond the vocabulary (" +
                      std::to_string(t.tokens.size()) + " ids) and its " + std::to_string(added.size()) +
                      " added tokens",
                  c.source);
    if (size_t(a.id) >= t.tokens.size() || t.tokens[a.id].empty()) {  // beyond the BPE vocab
      if (size_t(a.id) >= t.tokens.size())
        t.tokens.resize(a.id + 1), t.bytes.resize(a.id + 1), t.special.resize(a.id + 1);
      t.tokens[a.id] = a.content;
      t.bytes[a.id] = a.content;
      t.token_ids[a.content] = a.id;
    } else if (t.tokens[a.id] != a.content) {  // the id is another vocabulary entry's
      throw Error("added token '" + a.content + "' has id " + std::to_string(a.id) +
                      ", which the vocabulary gives to another token",
                  c.source);
    }
    if (a.special) t.special[a.id] = 1;
  }
  if (!added.empty()) t.added = std::move(added);  // files that name no token keep the defaults
  if (!c.bos.empty()) t.bos = t.id_of(c.bos, "bos_token", c.source);
  if (!c.eos.empty()) t.eos = t.id_of(c.eos, "eos_token", c.source);
  if (!c.unk.empty()) t.unk = t.id_of(c.unk, "unk_token", c.source);
  if (!c.pad.empty()) t.pad = t.id_of(c.pad, "pad_token", c.source);
  for (int32_t id : {t.bos, t.eos, t.unk, t.pad})
    if (id >= 0) t.special[id] = 1;
}

Tokenizer Tokenizer::builtin() {
  static const Tokenizer t = [] {
    auto files = embedded_tokenizer_files();
    return from_text(files.vocab_json, files.merges_txt, "<built-in>/vocab.json", "<built-in>/merges.txt");
  }();
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos) ids.push_back(impl_->bos);
  encode_append(text, ids);
  return ids;
}

void Tokenizer::encode_append(std::string_view text, std::vector<int32_t>& ids) const {
  Impl& t = *impl_;
  std::lock_guard lock(t.mu);
  if (!parse_special_ || t.added.empty()) return t.encode_text(text, ids);
  t.spans.clear();
  split_at_added_tokens(text, t.added, t.spans);
  for (const TextSpan& span : t.spans) {
    if (span.id >= 0)
      ids.push_back(span.id);
    else
      t.encode_text(span.text, ids);
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= t.bytes.size() || (skip_special && t.special[id])) continue;
    out += t.bytes[id];
  }
  return out;
}

std::string Tokenizer::decode_text(const std::vector<int32_t>& ids, bool skip_special) const {
  return utf8_replace_invalid(decode(ids, skip_special));
}

std::string_view Tokenizer::id_to_token(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->tokens.size() ? std::string_view(impl_->tokens[id]) : std::string_view();
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->bytes.size() ? std::string_view(impl_->bytes[id]) : std::string_view();
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_ids.find(token);
  if (it == impl_->token_ids.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[id];
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
int32_t Tokenizer::unk_id() const { return impl_->unk; }

}  // namespace optforge
