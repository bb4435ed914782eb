// Unit checks of the unpickler's safety rules and of pickler/unpickler agreement. The reference
// checks against Python's pickle and torch live in tests/python.
#include <gtest/gtest.h>

#include "pickle/pickler.h"
#include "pickle/unpickler.h"
#include "util/error.h"

using namespace optforge;

namespace {

ValuePtr load(const std::string& bytes) { return unpickle(bytes, "test.pkl", "data.pkl", nullptr); }

std::string error_of(const std::string& bytes) {
  try {
    load(bytes);
  } catch (const Error& e) { return e.what(); }
  return "";
}

}  // namespace

TEST(Unpickler, RefusesOsSystemWithNameFileAndOffset) {
  // pickle.dumps of a __reduce__ returning (os.system, ('echo hi',)), protocol 2
  std::string p = std::string("\x80\x02") + "cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
  std::string err = error_of(p);
  EXPECT_NE(err.find("posix.system"), std::string::npos) << err;
  EXPECT_NE(err.find("test.pkl"), std::string::npos) << err;
  EXPECT_NE(err.find("offset 2"), std::string::npos) << err;
}

TEST(Unpickler, RefusesBuiltinsEvalViaStackGlobal) {
  // protocol 4: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL
  std::string p =
      std::string("\x80\x04\x8c\x08") + "builtins" + "\x8c\x04" + "eval" + "\x93" + "\x8c\x01" + "1" + "\x85R.";
  std::string err = error_of(p);
  EXPECT_NE(err.find("builtins.eval"), std::string::npos) << err;
}

TEST(Unpickler, TruncatedAtEveryOffsetIsAnErrorNotACrash) {
  auto v = Value::dict();
  v->set("a", Value::list({Value::integer(1), Value::real(2.5), Value::str("x")}));
  v->set("b", Value::tuple({Value::boolean(true), Value::none(), Value::integer(-70000)}));
  std::string p = pickle_value(v, nullptr);
  ASSERT_NE(load(p), nullptr);
  for (size_t n = 0; n < p.size(); ++n) EXPECT_FALSE(error_of(p.substr(0, n)).empty()) << "length " << n;
}

TEST(Unpickler, DeepNestingIsRefusedWithoutOverflowingTheStack) {
  // 200k nested lists (EMPTY_LIST x n, APPEND x n-1): refused, and tearing the partial tree down
  // must not recurse 200k deep either.
  std::string p = "\x80\x02";
  const int n = 200000;
  for (int i = 0; i < n; ++i) p += ']';
  for (int i = 0; i < n - 1; ++i) p += 'a';
  p += '.';
  EXPECT_NE(error_of(p).find("deeper than"), std::string::npos);
  std::string ok = "\x80\x02";
  for (int i = 0; i < 500; ++i) ok += ']';
  for (int i = 0; i < 499; ++i) ok += 'a';
  ok += '.';
  EXPECT_TRUE(load(ok)->is(Value::Kind::List));
}

TEST(Unpickler, CyclesAndExponentialSharingAreRefused) {
  // l = []; l.append(l): EMPTY_LIST, BINPUT 0, BINGET 0, APPEND
  EXPECT_NE(error_of(std::string("\x80\x02]q\x00h\x00"
                                 "a.",
                                 9))
                .find("cycle"),
            std::string::npos);
  // x0 = []; x(k+1) = (xk, xk) for 40 levels: 2^40 expanded nodes
  std::string p = "\x80\x02]";
  for (int i = 0; i < 40; ++i) p += "\x32\x86";  // DUP, TUPLE2
  p += '.';
  EXPECT_NE(error_of(p).find("expands to more than"), std::string::npos);
}

TEST(Pickler, RoundTripsScalarsAndContainers) {
  auto v = Value::dict(true);
  v->set("int", Value::integer(int64_t(1) << 40));
  v->set("neg", Value::integer(-5));
  v->set("big_neg", Value::integer(INT64_MIN));
  v->set("float", Value::real(0.1));
  v->set("bytes", Value::bytes(std::string("\x00\xff\x80 abc", 7)));
  auto ns = Value::object("argparse.Namespace", {}, Value::dict());
  ns->state->set("arch", Value::str("transformer_lm_megatron"));
  v->set("cfg", ns);
  ValuePtr back = load(pickle_value(v, nullptr));
  ASSERT_TRUE(back->is_dict());
  EXPECT_TRUE(back->ordered);
  EXPECT_EQ(back->get("int")->i, int64_t(1) << 40);
  EXPECT_EQ(back->get("neg")->i, -5);
  EXPECT_EQ(back->get("big_neg")->i, INT64_MIN);
  EXPECT_EQ(back->get("float")->f, 0.1);
  EXPECT_EQ(back->get("bytes")->s, std::string("\x00\xff\x80 abc", 7));
  EXPECT_EQ(back->get("cfg")->s, "argparse.Namespace");
  EXPECT_EQ(back->get("cfg")->attr("arch")->s, "transformer_lm_megatron");
}

TEST(Pickler, OmegaconfIsWrittenAsPlainData) {
  auto content = Value::dict();
  content->set("lr", Value::object("omegaconf.nodes.AnyNode", {}, Value::dict()));
  content->get("lr")->state->set("_val", Value::real(3e-4));
  auto dc = Value::object("omegaconf.dictconfig.DictConfig", {}, Value::dict());
  dc->state->set("_content", content);
  std::string p = pickle_value(dc, nullptr);
  EXPECT_EQ(p.find("omegaconf"), std::string::npos);
  ValuePtr back = load(p);
  ASSERT_TRUE(back->is_dict());
  EXPECT_EQ(back->get("lr")->f, 3e-4);
}

// A container opcode whose source and target are the same object must neither read freed memory
// (ASan, which runs these tests, would abort) nor loop: each makes a cycle, which is refused.
TEST(Unpickler, CopyingAContainerIntoItselfIsSafe) {
  // d = {1: 1, ..., 9: 9}; BUILD(d, d) twice: the second appends d's entries to d's own state d.
  std::string dict_with_9 = std::string("\x80\x02}q\x00(", 6);
  for (char k = 1; k <= 9; ++k) dict_with_9 += std::string("K") + k + "K" + k;
  dict_with_9 += 'u';
  EXPECT_NE(error_of(dict_with_9 + "22bb.").find("cycle"), std::string::npos);
  // The same, one BUILD at a time: d.state = d, then d.state.update(d)
  EXPECT_NE(error_of(dict_with_9 + "2b2b.").find("cycle"), std::string::npos);
  // d[d] = d (SETITEMS), l.extend([l, l]) (APPENDS), s.update({s}) (ADDITEMS)
  EXPECT_NE(error_of(std::string("\x80\x02}q\x00(h\x00h\x00u.", 12)).find("cycle"), std::string::npos);
  EXPECT_NE(error_of(std::string("\x80\x02]q\x00(h\x00h\x00"
                                 "e.",
                                 12))
                .find("cycle"),
            std::string::npos);
  EXPECT_NE(error_of(std::string("\x80\x04\x8fq\x00(h\x00h\x00\x90.", 12)).find("cycle"), std::string::npos);
}

TEST(Unpickler, AnErrorNamesItsOffsetOnce) {
  // BUILD with only its state on the stack: the target is missing (BUILD is at byte 3).
  std::string err = error_of("\x80\x02}b.");
  EXPECT_NE(err.find("stack underflow (pickle byte offset 3)"), std::string::npos) << err;
  EXPECT_EQ(err.find("offset", err.find("offset") + 1), std::string::npos) << err;
  // An error raised while rebuilding a global keeps one offset too.
  err = error_of(
      "\x80\x02"
      "ctorch._utils\n_rebuild_tensor_v2\n)R.");
  EXPECT_NE(err.find("tensor rebuild takes"), std::string::npos) << err;
  EXPECT_EQ(err.find("offset", err.find("offset") + 1), std::string::npos) << err;
}

TEST(Unpickler, ACycleHeldOnlyByAFailingOpcodeIsFreed) {
  // d.state = d, then BUILD pops d as its state and finds no target: the failing opcode alone
  // held the cycle. LeakSanitizer (these tests run under it) would report it if it were not cut.
  std::string err =
      error_of(std::string("\x80\x02}2b"
                           "b.",
                           6));
  EXPECT_NE(err.find("stack underflow (pickle byte offset 5)"), std::string::npos) << err;
}

// A second BUILD updates the state as Python's obj.__dict__.update(state) does: pickle.loads of
// these bytes gives Namespace(a=3, b=2), and of the dict ones {'a': 2}.
TEST(Unpickler, BuildAndSetItemsReplaceAnEqualKey) {
  ValuePtr ns =
      load(std::string("\x80\x02"
                       "cargparse\nNamespace\n)\x81}(X\x01\x00\x00\x00"
                       "aK\x01X\x01\x00\x00\x00"
                       "bK\x02ub}X\x01\x00\x00\x00"
                       "aK\x03sb.",
                       56));
  ASSERT_EQ(ns->kind, Value::Kind::Object);
  ASSERT_TRUE(ns->state && ns->state->is_dict());
  ASSERT_EQ(ns->state->entries.size(), 2u);
  EXPECT_EQ(ns->attr("a")->i, 3);
  EXPECT_EQ(ns->attr("b")->i, 2);
  ValuePtr d =
      load(std::string("\x80\x02}(X\x01\x00\x00\x00"
                       "aK\x01X\x01\x00\x00\x00"
                       "aK\x02u.",
                       22));
  ASSERT_EQ(d->entries.size(), 1u);
  EXPECT_EQ(d->get("a")->i, 2);
}
