// This build's anyprec-server for a test: the ServerProcess of the binary that the test target
// names in ANYPREC_SERVER (target_compile_definitions), failing the test when it does not start.
#pragma once

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server_process.h"

#ifndef ANYPREC_SERVER
#error "a test that includes tests/test_server.h defines ANYPREC_SERVER as the anyprec-server binary's path"
#endif

namespace anyprec::testing {

class TestServer : public ServerProcess {
 public:
  explicit TestServer(const std::vector<std::string>& args, const std::string& log_path = "") : ServerProcess(ANYPREC_SERVER, args, log_path) {
    EXPECT_TRUE(started()) << "the server did not start";
  }
};

}  // namespace anyprec::testing
