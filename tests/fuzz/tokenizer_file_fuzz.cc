// Tokenizer files (tokenizer.json or llama2.c tokenizer.bin) from arbitrary bytes: an error,
// or a tokenizer that encodes and decodes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/anyprec-tokenizer-fuzz-" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  const auto tokenizer = anyprec::Tokenizer::Load(path);
  if (!tokenizer.ok()) return 0;
  const std::vector<anyprec::TokenId> ids = tokenizer->EncodeWithSpecialTokens("Once upon a time, \xff\xfe caf\xc3\xa9 \xf0\x9f\x99\x82!");
  for (anyprec::TokenId id : ids) {
    if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
  }
  tokenizer->Decode(ids);
  return 0;
}
