// Command-line parsing shared by anyprec's executables (anyprec, anyprec-server,
// anyprec-quantize, anyprec-synthesize, anyprec-loadtest and the bench tools), over CLI11.
#pragma once

#include <optional>

#include "CLI/CLI.hpp"

namespace anyprec::flags {

// Parses argv: the exit code to end with (0 after --help; 2, with CLI11's message on stderr,
// for any usage error), or nothing when the program goes on.
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

}  // namespace anyprec::flags
