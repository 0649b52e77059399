// config.json parsing on arbitrary text: an error, or a config the engine can size buffers by.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto config = anyprec::ParseModelConfig(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!config.ok()) return 0;
  if (config->hidden_size <= 0 || config->num_layers <= 0 || config->num_heads <= 0 || config->num_kv_heads <= 0 ||
      config->head_dim <= 0 || config->vocab_size <= 0 || config->num_heads % config->num_kv_heads != 0) {
    __builtin_trap();
  }
  return 0;
}
