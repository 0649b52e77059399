// Anyprec images made once per test process in temporary folders that are removed when the
// process ends.
#pragma once

#include <string>

namespace anyprec::testing {

const std::string& TinyStoriesImage();
// stories260K (its Hugging Face form, 3..8 bits, no sensitivity) with its 512-token tokenizer.
const std::string& Stories260KImage();

// An image (3..8 bits, Fisher sensitivity from 4 windows of 64 tokens of TinyStories, tokenized
// by stories260K's 512-token tokenizer, which the image then carries) of the checkpoint
// ../shared/models/synthetic-arch/VARIANT, made once per test process.
const std::string& SyntheticArchImage(const std::string& variant);

}  // namespace anyprec::testing
