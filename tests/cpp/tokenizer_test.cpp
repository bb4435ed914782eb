// Unit checks of the tokenizer's pieces. Agreement with Hugging Face on a large corpus lives in
// tests/python/test_tokenizer.py; here: the byte map, round trips, embedded data, streaming.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "io/mmap_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/embedded_data.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

using namespace optforge;

namespace {

const std::string kDataDir = std::string(OPTFORGE_SOURCE_DIR) + "/data/opt-tokenizer";

const std::vector<std::string>& tricky_strings() {
  static const std::vector<std::string> v = {"",
                                             " ",
                                             "Hello world",
                                             "a  b",
                                             "trailing  ",
                                             "  leading",
                                             "\n\n\n",
                                             "\r\n\t \x0b\x0c",
                                             "I'm HE'S don't I'LL she's",
                                             "'''ll've",
                                             "émoji 🤗",
                                             "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 🇫🇷",
                                             " 你好，世界",
                                             "مرحبا بالعالم",
                                             "नमस्ते दुनिया",
                                             "Привет, мир",
                                             "e\xCC\x81\xCC\xA3",
                                             std::string("nul\0byte", 8),
                                             "\x7f\x1b[0m",
                                             "\u00a0\u2003\u3000x\u2028\u0085y\xE1\xA0\x8E",
                                             "12345678901234567890 ١٢٣ ½ Ⅻ",
                                             "!!!???...---",
                                             std::string(1000, 'a'),
                                             std::string(300, ' ') + "x",
                                             "\xff\xfe raw \x80 bytes \xc3",
                                             "\xed\xa0\x80\xf4\x90\x80\x80",
                                             "</s> <pad> <s> <unk> <|endoftext|>"};
  return v;
}

}  // namespace

TEST(TokenizerByteMap, IsABijectionOverAllBytes) {
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    char32_t cp = byte_to_codepoint(uint8_t(b));
    EXPECT_TRUE(seen.insert(cp).second) << b;
    EXPECT_EQ(codepoint_to_byte(cp), b);
    std::string utf8;
    append_utf8(utf8, cp);
    EXPECT_EQ(byte_symbols_utf8()[b], utf8);
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(byte_to_codepoint(' '), U'\u0120');   // Ġ
  EXPECT_EQ(byte_to_codepoint('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(byte_to_codepoint('A'), U'A');
  EXPECT_EQ(byte_to_codepoint(0xAD), U'\u0143');  // soft hyphen is the last of the 68 remapped
  EXPECT_EQ(codepoint_to_byte(U'\u0144'), -1);
  EXPECT_EQ(codepoint_to_byte(U'€'), -1);
}

TEST(TokenizerUtf8, ReplacesLikePythonErrorsReplace) {
  const std::string fffd(kReplacementChar);
  EXPECT_EQ(utf8_replace_invalid("ok é 🤗"), "ok é 🤗");
  EXPECT_EQ(utf8_replace_invalid("\xed\xa0\x80"), fffd + fffd + fffd);  // surrogate: 3 subparts
  EXPECT_EQ(utf8_replace_invalid("\xe4\xbd"), fffd);                    // truncated: one
  EXPECT_EQ(utf8_replace_invalid("\xf0\x9f\x98"
                                 "A"),
            fffd + "A");
  EXPECT_EQ(utf8_replace_invalid("\xc0\xaf"), fffd + fffd);                        // overlong
  EXPECT_EQ(utf8_replace_invalid("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
}

TEST(TokenizerFiles, EmbeddedCopyEqualsDataDirectory) {
  auto files = embedded_tokenizer_files();
  EXPECT_EQ(files.vocab_json, read_text_file(kDataDir + "/vocab.json"));
  EXPECT_EQ(files.merges_txt, read_text_file(kDataDir + "/merges.txt"));
}

TEST(TokenizerFiles, MergesOnlyUseEarlierSymbols) {
  // The greedy lowest-rank-pair BPE in bpe.cpp equals HF's merge-all-occurrences rounds only when
  // every merge's parts are single byte symbols or results of earlier merges. OPT's files qualify.
  std::unordered_set<std::string> known(byte_symbols_utf8().begin(), byte_symbols_utf8().end());
  std::istringstream in(read_text_file(kDataDir + "/merges.txt"));
  std::string line;
  std::getline(in, line);
  ASSERT_TRUE(line.starts_with("#version"));
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto space = line.find(' ');
    std::string a = line.substr(0, space), b = line.substr(space + 1);
    ASSERT_TRUE(known.count(a) && known.count(b)) << "line " << n + 2 << ": " << line;
    known.insert(a + b);
    ++n;
  }
  EXPECT_EQ(n, 50000);
}

TEST(Tokenizer, SpecialIdsAndSizes) {
  Tokenizer tok = Tokenizer::builtin();
  EXPECT_EQ(tok.vocab_size(), 50265);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 1);
  EXPECT_EQ(tok.unk_id(), 3);
  EXPECT_EQ(tok.id_to_token(5), "Ġthe");
  EXPECT_EQ(tok.token_bytes(5), " the");
  EXPECT_EQ(tok.token_to_id("Ġthe"), 5);
  EXPECT_EQ(tok.id_to_token(50264), "<mask>");
  EXPECT_EQ(tok.id_to_token(50265), "");
}

TEST(Tokenizer, GoldenIdsFromTheServingDoc) {
  Tokenizer tok = Tokenizer::builtin();
  using V = std::vector<int32_t>;
  EXPECT_EQ(tok.encode("Hello world"), (V{2, 31414, 232}));
  EXPECT_EQ(tok.encode("Hello world", false), (V{31414, 232}));
  EXPECT_EQ(tok.encode("a  b"), (V{2, 102, 1437, 741}));
  EXPECT_EQ(tok.encode("I'm HE'S"), (V{2, 100, 437, 12925, 108, 104}));
  EXPECT_EQ(tok.encode(" 你好"), (V{2, 1437, 47856, 21402, 48975, 10809}));
  EXPECT_EQ(tok.encode(""), (V{2}));
}

TEST(Tokenizer, DecodeOfEncodeIsTheInputBytes) {
  Tokenizer tok = Tokenizer::builtin();
  for (const std::string& s : tricky_strings()) {
    auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s) << s;
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < tok.vocab_size()) << id;
    // Encoding twice hits the cache the second time: same answer.
    EXPECT_EQ(tok.encode(s), ids);
  }
  // The special strings are plain text: no id 2 after the BOS.
  auto ids = tok.encode("</s>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
}

TEST(Tokenizer, IdsOutsideTheVocabDecodeToNothing) {
  Tokenizer tok = Tokenizer::builtin();
  EXPECT_EQ(tok.decode({2, 31414, 50265, 50271, -1, INT32_MAX, 232, 1}), "Hello world");
  EXPECT_EQ(tok.decode({2, 31414, 1}, /*skip_special=*/false), "</s>Hello<pad>");
}

TEST(Tokenizer, LoadFromDirectoryEqualsBuiltin) {
  Tokenizer a = Tokenizer::load(kDataDir), b = Tokenizer::builtin();
  for (const std::string& s : tricky_strings()) EXPECT_EQ(a.encode(s), b.encode(s));
}

TEST(Tokenizer, BadFilesAreNamedInErrors) {
  try {
    Tokenizer::load("/nonexistent/dir");
    FAIL();
  } catch (const Error& e) { EXPECT_EQ(e.file(), "/nonexistent/dir"); }
  auto error_of = [](std::string_view vocab, std::string_view merges) {
    try {
      Tokenizer::from_text(vocab, merges, "v.json", "m.txt");
    } catch (const Error& e) { return std::string(e.what()); }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("{\"a\": ", "a b\n").rfind("v.json: not valid JSON", 0), 0u);
  EXPECT_NE(error_of("{\"a\": -1}", "a b\n").find("entry \"a\""), std::string::npos);
  EXPECT_NE(error_of("{\"</s>\": 0}", "a b\n").find("has no token"), std::string::npos);
  std::string vocab = embedded_tokenizer_files().vocab_json.data();
  EXPECT_EQ(error_of(vocab, "#version: 0.2\nĠ t\nĠa\n"),
            "m.txt: line 3: expected two symbols separated by one space, got \"Ġa\"");
}

TEST(TokenizerStream, NeverEmitsPartialUtf8) {
  Tokenizer tok = Tokenizer::builtin();
  std::mt19937 rng(42);
  std::vector<std::vector<int32_t>> seqs;
  for (const std::string& s : tricky_strings()) seqs.push_back(tok.encode(s));
  // Random runs of single-byte tokens and whole tokens: most split characters or are ill-formed.
  for (int k = 0; k < 300; ++k) {
    std::vector<int32_t> ids(rng() % 12);
    for (auto& id : ids)
      id = k % 2 ? int32_t(rng() % 50272) : int32_t(tok.token_to_id(byte_symbols_utf8()[rng() % 256]).value());
    seqs.push_back(ids);
  }
  for (const auto& ids : seqs) {
    StreamDecoder dec(tok);
    std::string all;
    for (int32_t id : ids) {
      std::string chunk = dec.push(id);
      EXPECT_TRUE(utf8_valid(chunk));
      all += chunk;
    }
    std::string tail = dec.finish();
    EXPECT_TRUE(utf8_valid(tail));
    EXPECT_EQ(all + tail, tok.decode_text(ids));
  }
  // A 4-byte emoji split over byte tokens comes out whole, only with its last byte.
  StreamDecoder dec(tok);
  std::string emoji = "🤗";
  for (size_t i = 0; i + 1 < emoji.size(); ++i)
    EXPECT_EQ(dec.push(*tok.token_to_id(byte_symbols_utf8()[uint8_t(emoji[i])])), "");
  EXPECT_EQ(dec.pending(), 3u);
  EXPECT_EQ(dec.push(*tok.token_to_id(byte_symbols_utf8()[uint8_t(emoji.back())])), emoji);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  Tokenizer tok = Tokenizer::load(kDataDir);  // a fresh cache, filled by all threads at once
  std::vector<std::vector<int32_t>> want;
  for (const std::string& s : tricky_strings()) want.push_back(Tokenizer::builtin().encode(s));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int r = 0; r < 20; ++r)
        for (size_t i = 0; i < want.size(); ++i) bad += tok.encode(tricky_strings()[i]) != want[i];
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, 0);
}
