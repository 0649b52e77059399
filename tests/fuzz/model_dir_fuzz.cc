// Model::Load on a folder written from arbitrary bytes: config.json, an optional
// model.safetensors.index.json, and the weights (as model.safetensors, as the shard the seed
// index names, and as an image's anyprec.safetensors), separated by kSeparator. A folder that
// loads must run a forward step.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/runtime/transformer.h"

namespace {

namespace fs = std::filesystem;
constexpr std::string_view kSeparator = "\n--anyprec-fuzz--\n";

void Write(const fs::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = fs::temp_directory_path() / ("anyprec-model-dir-fuzz-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<std::string_view> parts;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (parts.size() < 2) {
    const size_t at = rest.find(kSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kSeparator.size());
  }
  parts.push_back(rest);
  Write(dir / "config.json", parts[0]);
  if (parts.size() == 3 && !parts[1].empty()) Write(dir / "model.safetensors.index.json", parts[1]);
  for (const char* name : {"model.safetensors", "model-00001-of-00001.safetensors", "anyprec.safetensors"}) Write(dir / name, parts.back());

  auto model = anyprec::Model::Load(dir.string());
  if (!model.ok()) return 0;
  const anyprec::ModelConfig& c = model->config();
  anyprec::Transformer transformer(*model, {.exact_kernels = true});
  anyprec::KvCache cache(c, 2);
  std::vector<float> logits(c.vocab_size);
  anyprec::ForwardOptions options;
  options.bits = c.quantization ? c.quantization->seed_bits : 0;
  const anyprec::TokenId token = 0;
  if (!transformer.Forward(std::span(&token, 1), cache, anyprec::LogitsFor::kLastToken, logits, options).ok()) __builtin_trap();
  return 0;
}
