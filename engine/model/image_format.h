// Names and rules of the anyprec image (docs/FORMAT.md), shared by its writer (the
// quantizer) and its reader (Model::Load).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace anyprec::image {

constexpr int kFormatVersion = 1;
constexpr std::string_view kConfigSection = "anyprec";
constexpr std::string_view kWeightsFile = "anyprec.safetensors";

// A quantized linear layer's tensors, from its prefix (arch::LayerTensor, e.g.
// "model.layers.3.mlp.up_proj"); the layers are arch::kLinears.
std::string PlanesTensor(const std::string& linear_prefix);     // "….planes"
std::string LutTensor(const std::string& linear_prefix, int bits);  // "….lut4"
std::string ChecksumKey(const std::string& tensor);             // "xxh3:<tensor>"

// XXH3-64 of a tensor's bytes, as 16 lower-case hex digits.
std::string Checksum(std::span<const std::byte> bytes);

}  // namespace anyprec::image
