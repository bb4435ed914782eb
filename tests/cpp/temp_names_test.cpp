// Temporary output names: recognised (current and older forms, nothing else), and a folder output
// that appears only on commit. The SIGKILL behaviour itself is tested from Python
// (tests/python/test_hard_kill.py), which can kill a real process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/atomic_dir.h"
#include "io/temp_names.h"
#include "util/error.h"

using namespace optforge;
namespace fs = std::filesystem;

TEST(TempNames, OwnNamesParseBackToTheFinalNameAndPid) {
  std::string t = temp_path_for("some/dir/model.safetensors");
  EXPECT_EQ(fs::path(t).parent_path(), "some/dir");
  std::string final_name;
  long pid = 0;
  ASSERT_TRUE(parse_temp_name(fs::path(t).filename().string(), &final_name, &pid));
  EXPECT_EQ(final_name, "model.safetensors");
  EXPECT_EQ(pid, long(::getpid()));
  ASSERT_TRUE(parse_temp_name(".a-b.tmp-1.pt.tmp-123-456", &final_name, &pid));  // the older form
  EXPECT_EQ(final_name, "a-b.tmp-1.pt");
  EXPECT_EQ(pid, 123);
}

TEST(TempNames, OtherNamesAreNotTemporaries) {
  std::string f;
  long pid = 0;
  for (const char* n : {"model.pt", ".model.pt", ".model.pt.tmp-12", ".model.pt.tmp-x-1", "model.pt.tmp-optforge-1-2",
                        ".model.pt.tmp-optforge-1-", ".tmp-optforge-1-2", ".m.tmp-optforge-0-2"})
    EXPECT_FALSE(parse_temp_name(n, &f, &pid)) << n;
}

TEST(AtomicDir, AppearsOnlyOnCommitAndRefusesANonEmptyFolder) {
  fs::path root = fs::temp_directory_path() / "optforge_atomic_dir_test";
  fs::remove_all(root);
  fs::create_directories(root / "busy");
  std::ofstream(root / "busy" / "mine.txt") << "x";
  EXPECT_THROW(AtomicDir((root / "busy").string()), Error);
  {
    AtomicDir d((root / "out").string());
    std::ofstream(d.path("a.pt")) << "complete";
    EXPECT_FALSE(fs::exists(root / "out"));
  }
  EXPECT_FALSE(fs::exists(root / "out"));  // not committed: the temporary folder is gone too
  EXPECT_EQ(std::distance(fs::directory_iterator(root), fs::directory_iterator()), 1);
  fs::create_directories(root / "empty");
  AtomicDir d((root / "empty/").string());
  std::ofstream(d.path("a.pt")) << "complete";
  d.commit();
  EXPECT_TRUE(fs::exists(root / "empty" / "a.pt"));
  EXPECT_EQ(std::distance(fs::directory_iterator(root), fs::directory_iterator()), 2);
  fs::remove_all(root);
}
