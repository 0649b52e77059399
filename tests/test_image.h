// An anyprec image quantized from the real TinyStories-656K (3..8 bits, no calibration),
// made once per test process in a temporary folder that is removed when the process ends.
#pragma once

#include <string>

namespace anyprec::testing {

const std::string& TinyStoriesImage();

}  // namespace anyprec::testing
