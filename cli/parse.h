// Command-line parsing shared by anyprec's executables: --help exits 0, any usage error
// (unknown flag, bad value, missing option) exits 2 with CLI11's message on stderr.
#pragma once

#include <optional>

#include "CLI/CLI.hpp"

namespace anyprec::cli {

// The exit code to end with, or nothing when the arguments parsed and the program goes on.
inline std::optional<int> ParseOrExitCode(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  return std::nullopt;
}

}  // namespace anyprec::cli
