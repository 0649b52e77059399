// Every real tokenizer anyprec supports (../shared/tokenizers and llama2.c's tok512.bin) on
// arbitrary bytes: encoding them as text, and decoding them as token ids (in range or not),
// whole and one id at a time.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace {

std::vector<anyprec::Tokenizer>& Tokenizers() {
  static std::vector<anyprec::Tokenizer> tokenizers;
  return tokenizers;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* shared = std::getenv("ANYPREC_SHARED");
  const std::string root = shared != nullptr ? shared : ANYPREC_DEFAULT_SHARED_DIR;
  for (const char* file : {"tokenizers/gpt2/tokenizer.json", "tokenizers/smollm2/tokenizer.json", "tokenizers/mistral-7b-v0.1/tokenizer.json",
                           "tokenizers/phi-3.5-mini/tokenizer.json", "tokenizers/llama-3.1/tokenizer.json", "tokenizers/qwen3/tokenizer.json",
                           "tokenizers/gemma3/tokenizer.json", "models/TinyStories-656K/tokenizer.json", "models/stories260K/tok512.bin"}) {
    auto tokenizer = anyprec::Tokenizer::Load(root + "/" + file);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "tokenizer_fuzz: %s/%s: %s (set ANYPREC_SHARED to the shared folder)\n", root.c_str(), file,
                   std::string(tokenizer.status().message()).c_str());
      std::exit(1);
    }
    Tokenizers().push_back(*std::move(tokenizer));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const anyprec::Tokenizer& tokenizer = Tokenizers()[data[0] % Tokenizers().size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  for (anyprec::TokenId id : tokenizer.Encode(text)) {
    if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();
  }
  std::vector<anyprec::TokenId> ids((size - 1) / sizeof(anyprec::TokenId));
  if (!ids.empty()) std::memcpy(ids.data(), data + 1, ids.size() * sizeof(anyprec::TokenId));
  for (anyprec::TokenId& id : ids) {
    if (data[0] & 0x80) id = static_cast<anyprec::TokenId>(static_cast<uint32_t>(id) % (tokenizer.vocab_size() + 8));
  }
  tokenizer.Decode(ids, data[0] & 0x40);
  anyprec::DecodeStream stream(tokenizer);
  for (anyprec::TokenId id : ids) stream.Next(id);
  return 0;
}
