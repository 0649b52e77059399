// Latency and throughput curves of a rate sweep, drawn by gnuplot (Debian's gnuplot-nox).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "loadtest/report.h"

namespace anyprec::loadtest {

// Writes `png_path` (and its data beside it, as png_path + ".dat"): TTFT and TPOT percentiles
// against the offered rate, and achieved requests/s and output tokens/s against it.
absl::Status PlotSweep(const std::vector<Report>& reports, const std::string& png_path);

}  // namespace anyprec::loadtest
