// optforge tokenize: text -> ids (or ids -> text with --decode), one line of stdin per line of
// stdout. A line is plain text, or a JSON object with a "text" field (the way to pass newlines).
// Input is read in large chunks and output flushed once per chunk: fast for big files, and still
// answers a line at a time when another program drives it through a pipe.
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "tokenizer/bpe.h"
#include "tokenizer_options.h"
#include "util/error.h"

namespace optforge::cli {
namespace {

struct Options {
  TokenizerOptions tokenizer;
  bool decode = false, no_bos = false, keep_special = false;
};

class Output {
 public:
  ~Output() { flush(); }
  std::string& buffer() { return buf_; }
  void flush() {
    if (buf_.empty()) return;
    if (std::fwrite(buf_.data(), 1, buf_.size(), stdout) != buf_.size() || std::fflush(stdout) != 0)
      throw Error(std::string("cannot write output: ") + std::strerror(errno), "<stdout>");
    buf_.clear();
  }

 private:
  std::string buf_;
};

// The text of an input line: the "text" field when the line is a JSON object that has one.
std::string_view line_text(std::string_view line, std::string& storage) {
  size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos || line[first] != '{') return line;
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return line;
  auto it = j.find("text");
  if (it == j.end() || !it->is_string()) return line;
  storage = it->get<std::string>();
  return storage;
}

void encode_line(const Tokenizer& tok, const Options& o, std::string_view line, std::vector<int32_t>& ids,
                 std::string& out) {
  std::string storage;
  ids.clear();
  if (!o.no_bos) ids.push_back(tok.bos_id());
  tok.encode_append(line_text(line, storage), ids);
  out += '[';
  char num[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    auto r = std::to_chars(num, num + sizeof num, ids[i]);
    out.append(num, r.ptr);
  }
  out += "]\n";
}

void decode_line(const Tokenizer& tok, const Options& o, std::string_view line, size_t line_no,
                 std::vector<int32_t>& ids, std::string& out) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  auto bad = [&] {
    return Error("expected a JSON array of integer ids", "<stdin>", "line " + std::to_string(line_no));
  };
  if (!j.is_array()) throw bad();
  ids.clear();
  for (auto& v : j) {
    if (!v.is_number_integer()) throw bad();
    // Ids beyond int32 are as unknown as any other id outside the vocab: they decode to nothing.
    int64_t id = v.get<int64_t>();
    ids.push_back(id < 0 || id > INT32_MAX ? -1 : int32_t(id));
  }
  out += nlohmann::json(tok.decode_text(ids, !o.keep_special)).dump();
  out += '\n';
}

void run(const Options& o) {
  const Tokenizer tok = load_tokenizer(o.tokenizer);
  Output out;
  std::vector<int32_t> ids;
  std::string pending;  // an incomplete last line, waiting for its newline
  std::vector<char> chunk(1 << 20);
  size_t line_no = 0;
  auto handle = [&](std::string_view line) {
    ++line_no;
    if (o.decode)
      decode_line(tok, o, line, line_no, ids, out.buffer());
    else
      encode_line(tok, o, line, ids, out.buffer());
  };
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(std::string("cannot read input: ") + std::strerror(errno), "<stdin>");
    if (n == 0) break;
    std::string_view data(chunk.data(), size_t(n));
    size_t nl;
    while ((nl = data.find('\n')) != std::string_view::npos) {
      if (pending.empty()) {
        handle(data.substr(0, nl));
      } else {
        pending.append(data.substr(0, nl));
        handle(pending);
        pending.clear();
      }
      data.remove_prefix(nl + 1);
    }
    pending.append(data);
    out.flush();
  }
  if (!pending.empty()) handle(pending);
  out.flush();
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "tokenize",
      "Encode stdin lines to JSON id arrays (a line may be {\"text\": ...}), or decode id arrays with --decode");
  add_tokenizer_options(cmd, o->tokenizer);
  cmd->add_flag("--decode", o->decode, "Read JSON arrays of ids, print JSON strings");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend </s> (id 2) when encoding");
  cmd->add_flag("--keep-special", o->keep_special,
                "When decoding, print <s> <pad> </s> <unk> instead of dropping them");
  cmd->callback([o] { run(*o); });
}

}  // namespace optforge::cli
