// Output rows are the unit the CPU kernels spread over cores: blocks of 16 rows, statically
// split between threads so that each streams a contiguous part of every weight matrix.
#pragma once

#include <algorithm>

namespace anyprec::cpu {

// Calls fn(begin, end) for every block of up to 16 rows in [0, rows), on all cores when
// `multiply_adds` (the work of the whole call) is large enough to pay for waking them.
template <typename Fn>
void ForEachRowBlock(int rows, long multiply_adds, const Fn& fn) {
  constexpr int kRowsPerBlock = 16;
  constexpr long kParallelWork = 1l << 18;
  const int blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
#pragma omp parallel for schedule(static) if (multiply_adds >= kParallelWork)
  for (int b = 0; b < blocks; ++b) {
    const int begin = b * kRowsPerBlock;
    fn(begin, std::min(rows, begin + kRowsPerBlock));
  }
}

}  // namespace anyprec::cpu
