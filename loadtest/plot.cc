#include "loadtest/plot.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace anyprec::loadtest {

absl::Status PlotSweep(const std::vector<Report>& reports, const std::string& png_path) {
  const std::string data_path = png_path + ".dat";
  {
    std::ofstream data(data_path);
    data << "# offered_rate req_per_s out_tok_per_s ttft_p50_ms ttft_p99_ms tpot_p50_ms tpot_p99_ms\n";
    for (const Report& r : reports) {
      const Summary& s = r.overall();
      data << absl::StrFormat("%g %g %g %g %g %g %g\n", r.offered_rate, s.completed / r.seconds, s.output_tokens / r.seconds,
                              s.ttft.p50 * 1e3, s.ttft.p99 * 1e3, s.tpot.p50 * 1e3, s.tpot.p99 * 1e3);
    }
    if (!data) return absl::DataLossError(absl::StrCat(data_path, ": cannot write"));
  }
  const std::string script = absl::StrCat(
      "set terminal pngcairo size 1200,500 font ',10'\n",
      "set output '", png_path, "'\n",
      "set multiplot layout 1,2 title 'anyprec-server rate sweep'\n",
      "set xlabel 'offered rate (requests/s)'\nset grid\nset key top left\n",
      "set ylabel 'milliseconds'\nset logscale y\n",
      "plot '", data_path, "' using 1:4 with linespoints title 'TTFT p50', '' using 1:5 with linespoints title 'TTFT p99', ",
      "'' using 1:6 with linespoints title 'TPOT p50', '' using 1:7 with linespoints title 'TPOT p99'\n",
      "unset logscale y\nset ylabel 'requests/s'\nset y2label 'output tokens/s'\nset y2tics\nset ytics nomirror\n",
      "plot '", data_path, "' using 1:2 with linespoints title 'completed requests/s' axes x1y1, ",
      "'' using 1:3 with linespoints title 'output tokens/s' axes x1y2\n",
      "unset multiplot\n");
  FILE* const gnuplot = popen("gnuplot", "w");
  if (gnuplot == nullptr) return absl::UnavailableError("cannot run gnuplot (Debian package gnuplot-nox)");
  std::fputs(script.c_str(), gnuplot);
  const int status = pclose(gnuplot);
  if (status != 0) return absl::UnavailableError(absl::StrCat("gnuplot failed (exit status ", status, "); is gnuplot-nox installed?"));
  return absl::OkStatus();
}

}  // namespace anyprec::loadtest
