// Tensor::contiguous_strides: the one stride computation every reader uses. Expected strides are
// numpy's (np.zeros(shape, order=...).strides divided by the item size) and, for zero sizes,
// torch's (numpy zeroes every stride of an empty array).
#include <gtest/gtest.h>

#include "tensor/tensor.h"
#include "util/error.h"

using namespace optforge;

TEST(TensorStrides, RowAndColumnMajorMatchNumpy) {
  EXPECT_EQ(Tensor::contiguous_strides({2, 3, 4}), (Shape{12, 4, 1}));       // order="C"
  EXPECT_EQ(Tensor::contiguous_strides({2, 3, 4}, true), (Shape{1, 2, 6}));  // order="F"
  EXPECT_EQ(Tensor::contiguous_strides({}), Shape{});
  // torch counts a zero size as 1: torch.zeros(2, 0, 4).stride() == (4, 4, 1), and
  // torch.zeros(4, 0, 2).permute(2, 1, 0).stride() == (1, 2, 2).
  EXPECT_EQ(Tensor::contiguous_strides({2, 0, 4}), (Shape{4, 4, 1}));
  EXPECT_EQ(Tensor::contiguous_strides({2, 0, 4}, true), (Shape{1, 2, 2}));
}

TEST(TensorStrides, HugeSizesBesideAZeroAreRefusedNotOverflowed) {
  const int64_t big = int64_t(1) << 40;  // the product of two is 2^80: int64 would overflow
  for (bool column_major : {false, true}) {
    EXPECT_THROW(Tensor::contiguous_strides({0, big, big}, column_major), Error);
    EXPECT_THROW(Tensor::contiguous_strides({big, big, 0}, column_major), Error);
    EXPECT_THROW(Tensor::contiguous_strides({2, -1}, column_major), Error);
  }
  EXPECT_EQ(Tensor::contiguous_strides({0, int64_t(1) << 28, int64_t(1) << 28}),
            (Shape{int64_t(1) << 56, int64_t(1) << 28, 1}));
  EXPECT_THROW(Tensor::contiguous_strides({2, int64_t(1) << 28, int64_t(1) << 28}), Error);
}

TEST(TensorStrides, CheckBoundsRefusesAnEmptyTensorWithHugeSizes) {
  Tensor t;
  t.storage = Storage::allocate(DType::F32, 0);
  t.shape = {0, int64_t(1) << 40, int64_t(1) << 40};
  t.strides = {0, 0, 0};
  EXPECT_THROW(t.check_bounds(), Error);
  t.shape = {0, 3};
  t.strides = {3, 1};
  EXPECT_NO_THROW(t.check_bounds());
}
