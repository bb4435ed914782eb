// The one per-sample decoder and its incremental text: streamed pieces with stop sequences
// join to Tokenizer::decode_text() of all the ids cut before the first stop (decode_text is held
// to Python's errors="replace" in tests/python/test_tokenizer.py); each token's bytes are read
// once (no re-decoding of the sequence); the choice, stop and length rules of SampleDecoder; the
// names tokens get in API responses.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "model/sample_decoder.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/token_label.h"
#include "tokenizer/utf8.h"

using namespace optforge;

namespace {

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::builtin();
  return t;
}

// text_bytes(tok()), counting its calls.
TokenBytes counted_bytes(int* calls) {
  return [calls, bytes = text_bytes(tok())](int32_t id) {
    ++*calls;
    return bytes(id);
  };
}

constexpr int32_t kEos = 2;  // OPT's config eos_token_id

int32_t byte_token(uint8_t b) { return *tok().token_to_id(byte_symbols_utf8()[b]); }

// Random runs of byte tokens (mostly pieces of characters) and whole tokens.
std::vector<int32_t> random_ids(std::mt19937& rng) {
  std::vector<int32_t> ids(rng() % 16);
  for (auto& id : ids) id = rng() % 3 ? byte_token(uint8_t(0x80 + rng() % 0x80)) : int32_t(rng() % 50272);
  return ids;
}

}  // namespace

TEST(StreamDecoderStops, PiecesJoinToTheTextCutBeforeTheFirstStop) {
  std::mt19937 rng(7);
  for (int k = 0; k < 2000; ++k) {
    const std::vector<int32_t> ids = random_ids(rng);
    const std::string all = tok().decode_text(ids);
    std::vector<std::string> stops;
    for (int s = 0; s < 2 && !all.empty(); ++s) {  // pieces of the text itself, U+FFFD included
      const size_t at = rng() % all.size(), len = 1 + rng() % 6;
      std::string st = utf8_replace_invalid(all.substr(at, len));
      if (!st.empty()) stops.push_back(st);
    }
    size_t cut = std::string::npos;
    for (const auto& st : stops) cut = std::min(cut, all.find(st));
    const std::string want = cut == std::string::npos ? all : all.substr(0, cut);

    StreamDecoder dec(text_bytes(tok()), stops);
    std::string got;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      EXPECT_TRUE(utf8_valid(piece));
      got += piece;
    }
    got += dec.finish();
    ASSERT_EQ(got, want) << "case " << k << " stops: " << testing::PrintToString(stops);
    EXPECT_EQ(dec.stopped(), cut != std::string::npos);
  }
}

TEST(StreamDecoderStops, ReadsEachTokenOnceAndHoldsOnlyWhatMayChange) {
  int calls = 0;
  StreamDecoder dec(counted_bytes(&calls), {"world"});
  const std::vector<int32_t> ids = tok().encode("Hello wor", false);
  std::string out;
  for (int32_t id : ids) out += dec.push(id);
  EXPECT_EQ(calls, int(ids.size()));
  EXPECT_EQ(out, "Hello ");  // "wor" may be the start of "world"
  EXPECT_EQ(dec.pending(), 3u);
  EXPECT_EQ(dec.push(*tok().token_to_id("ld")), "");
  EXPECT_TRUE(dec.stopped());
  EXPECT_EQ(dec.push(byte_token('x')), "");  // nothing after a stop
  EXPECT_EQ(dec.finish(), "");
}

TEST(SampleText, HoldsBackStopPrefixesAndPartialCharacters) {
  EXPECT_EQ(unstable_tail("hello wor", {"world"}), 3u);
  EXPECT_EQ(unstable_tail("hello", {"xyz"}), 0u);
  EXPECT_EQ(unstable_tail("ab\xE4\xBD", {}), 2u);  // first two bytes of a three-byte character
  EXPECT_EQ(unstable_tail("ab\xE4\xBD\xA0", {}), 0u);
}

TEST(SampleDecoder, GreedyStopsAtStopSequencesEosAndTheBudget) {
  const int64_t V = 50272;
  auto logits_for = [&](int32_t id) {
    std::vector<float> l(size_t(V), 0.0f);
    l[size_t(id)] = 10.0f;
    return l;
  };
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.stop = {"\xF0\x9F\xA4\x97!"};  // the emoji, then "!"
  o.top_logprobs = 2;
  SampleDecoder dec(o, {}, kEos, {2}, 0, 10, text_bytes(tok()));
  std::string text;
  for (uint8_t b : std::string("a\xF0\x9F\xA4\x97!")) {
    ASSERT_FALSE(dec.finished());
    const auto l = logits_for(byte_token(b));
    SampleDecoder::Step st = dec.next(l.data(), V);
    ASSERT_TRUE(st.token);
    EXPECT_EQ(st.token->id, byte_token(b));
    EXPECT_NEAR(*st.token->logprob, 10.0f - std::log(std::exp(10.0) + double(V - 1)), 1e-4);
    EXPECT_EQ(st.token->top.size(), 2u);
    text += st.text;
  }
  EXPECT_TRUE(dec.finished());
  EXPECT_EQ(dec.finish_reason(), "stop");
  EXPECT_EQ(text + dec.rest(), "a");
  EXPECT_EQ(dec.generated(), 6);

  // </s> ends a sample with "stop" and no token; min_tokens suppresses it first.
  SampleControls c;
  c.min_tokens = 1;
  c.logprobs = false;
  SampleDecoder eos(o, c, kEos, {2}, 0, 10, text_bytes(tok()));
  const auto l = logits_for(2);
  SampleDecoder::Step first = eos.next(l.data(), V);
  ASSERT_TRUE(first.token);
  EXPECT_NE(first.token->id, 2);
  EXPECT_FALSE(first.token->logprob);
  EXPECT_FALSE(eos.next(l.data(), V).token);
  EXPECT_EQ(eos.finish_reason(), "stop");

  // The budget ends it with "length", a cut-off character becoming U+FFFD.
  o.stop.clear();
  SampleDecoder len(o, {}, kEos, {2}, 0, 2, text_bytes(tok()));
  std::string t;
  for (uint8_t b : {uint8_t('a'), uint8_t(0xE4)}) t += len.next(logits_for(byte_token(b)).data(), V).text;
  EXPECT_TRUE(len.finished());
  EXPECT_EQ(len.finish_reason(), "length");
  EXPECT_EQ(t + len.rest(), "a\xEF\xBF\xBD");
}

TEST(TokenLabel, DistinctIdsGetDistinctNames) {
  EXPECT_EQ(token_label(tok(), 2), "</s>");
  EXPECT_EQ(token_label(tok(), 31414), "Hello");
  EXPECT_EQ(token_label(tok(), 6569), "bytes:\\xf0\\x9f");
  EXPECT_EQ(token_label(tok(), 8103), "bytes: \\xf0\\x9f");  // printable ASCII stays, as in Python's repr
  EXPECT_EQ(token_label(tok(), 50265), "token_id:50265");
  std::set<std::string> names;
  for (int32_t id = 0; id < 50272; ++id) names.insert(token_label(tok(), id));
  EXPECT_EQ(names.size(), 50272u);
}
