// Locates ../shared (the read-only models, texts and tokenizers beside the repository).
#pragma once

#include <string>

namespace anyprec::testing {

// The shared folder: $ANYPREC_SHARED if set, else ../shared next to the source tree.
// Fails the calling test, with a message naming the path, when it is missing.
std::string SharedDir();
std::string SharedPath(const std::string& relative);

}  // namespace anyprec::testing
