#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "io/mmap_file.h"
#include "io/zip_reader.h"
#include "io/zip_writer.h"
#include "util/error.h"

using namespace optforge;
namespace fs = std::filesystem;

TEST(Zip, WriterOutputReadsBackAlignedWithCrc) {
  fs::path dir = fs::temp_directory_path() / "optforge_zip_test";
  fs::create_directories(dir);
  std::string path = (dir / "a.zip").string();
  {
    AtomicFile out(path);
    ZipWriter z(out);
    z.add("archive/data.pkl", "hello");
    std::string big(100000, 'x');
    z.begin_entry("archive/data/0", big.size());
    z.write(big.data(), 40000);
    z.write(big.data() + 40000, 60000);
    z.end_entry();
    z.finish();
    out.commit();
  }
  auto m = MappedFile::open(path);
  ZipReader r(m->data(), m->size(), path);
  ASSERT_EQ(r.entries().size(), 2u);
  const ZipEntry* e = r.find("archive/data/0");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->data_offset % 64, 0u);
  EXPECT_EQ(e->size, 100000u);
  EXPECT_NO_THROW(r.verify_crc(*e));
  EXPECT_EQ(r.bytes(*r.find("archive/data.pkl")), "hello");
  fs::remove_all(dir);
}

TEST(AtomicFile, NothingUnderTheFinalNameWithoutCommit) {
  fs::path dir = fs::temp_directory_path() / "optforge_atomic_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string path = (dir / "out.pt").string();
  {
    AtomicFile out(path);
    out.write("partial");
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir));  // the temporary is gone too
  fs::remove_all(dir);
}
