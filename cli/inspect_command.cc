#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "engine/cpu/kernel_choice.h"
#include "engine/model/arch.h"
#include "engine/model/bitplanes.h"
#include "engine/model/image_format.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {

void AddInspectCommand(CLI::App& app, InspectOptions& o) {
  CLI::App* cmd = app.add_subcommand("inspect", "Sizes of an anyprec image and the bytes each width reads per token");
  cmd->add_option("image", o.image_dir, "Image folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", o.json, "Print one JSON object");
}

int RunInspect(const InspectOptions& o) {
  auto model = Model::Load(o.image_dir);  // validates every size, offset and checksum
  if (!model.ok()) return ReportError(model.status(), 1);
  const ModelConfig& c = model->config();
  if (!c.quantization) return ReportError(absl::InvalidArgumentError(o.image_dir + ": not an anyprec image"), 1);
  const std::string weights_path = (std::filesystem::path(o.image_dir) / c.quantization->weights_file).string();
  auto file = SafetensorsFile::Open(weights_path);
  if (!file.ok()) return ReportError(file.status(), 1);

  const int seed = c.quantization->seed_bits;
  const int max = c.quantization->max_bits;
  // Sizes by the names the format gives each tensor; everything else is dense.
  uint64_t plane_bytes = 0;
  uint64_t lut_total = 0;
  std::vector<uint64_t> lut_bytes(max + 1, 0);
  const auto& tensors = file->tensors();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    for (const arch::LinearSpec& linear : arch::kLinears) {
      const std::string prefix = arch::LayerTensor(layer, linear.name);
      plane_bytes += tensors.at(image::PlanesTensor(prefix)).data.size();
      for (int b = seed; b <= max; ++b) lut_bytes[b] += tensors.at(image::LutTensor(prefix, b)).data.size();
    }
  }
  for (int b = seed; b <= max; ++b) lut_total += lut_bytes[b];
  uint64_t all_bytes = 0;
  for (const auto& [name, view] : tensors) all_bytes += view.data.size();
  const uint64_t dense_bytes = all_bytes - plane_bytes - lut_total;
  uint64_t quantized_weights = 0;
  for (const LayerWeights& layer : model->weights().layers) {
    for (const Linear* linear : layer.linears()) quantized_weights += static_cast<uint64_t>(linear->rows) * linear->cols;
  }
  const uint64_t image_bytes = std::filesystem::file_size(weights_path);

  nlohmann::json report = {{"image", o.image_dir},
                           {"seed_bits", seed},
                           {"max_bits", max},
                           {"quantized_weights", quantized_weights},
                           {"plane_bytes", plane_bytes},
                           {"dense_bytes", dense_bytes},
                           {"image_bytes", image_bytes}};
  const absl::StatusOr<cpu::KernelChoice> kernel = cpu::ChooseKernel();
  report["cpu_kernel"] = kernel.ok() ? kernel->summary : std::string(kernel.status().message());
  uint64_t separate_images = 0;
  for (int b = seed; b <= max; ++b) {
    const uint64_t planes_b = plane_bytes / max * b;
    const uint64_t read = model->BytesReadPerToken(b);
    separate_images += planes_b + lut_bytes[b] + dense_bytes;
    report["widths"].push_back({{"bits", b}, {"lut_bytes", lut_bytes[b]}, {"plane_bytes_read", planes_b}, {"bytes_per_token", read}});
  }
  report["separate_images_bytes"] = separate_images;

  if (o.json) {
    std::printf("%s\n", report.dump().c_str());
    return 0;
  }
  std::printf("%s: anyprec image, widths %d..%d, %llu quantized weights\n", o.image_dir.c_str(), seed, max,
              static_cast<unsigned long long>(quantized_weights));
  std::printf("  bitplanes %llu B, dense tensors %llu B, file %llu B (separate %d..%d-bit images: %llu B)\n",
              static_cast<unsigned long long>(plane_bytes), static_cast<unsigned long long>(dense_bytes),
              static_cast<unsigned long long>(image_bytes), seed, max, static_cast<unsigned long long>(separate_images));
  std::printf("  CPU bitplane kernel here: %s\n", report["cpu_kernel"].get<std::string>().c_str());
  std::printf("  %5s %14s %14s %16s\n", "bits", "LUT bytes", "plane bytes", "bytes per token");
  for (const auto& w : report["widths"]) {
    std::printf("  %5d %14llu %14llu %16llu\n", w["bits"].get<int>(), w["lut_bytes"].get<unsigned long long>(),
                w["plane_bytes_read"].get<unsigned long long>(), w["bytes_per_token"].get<unsigned long long>());
  }
  return 0;
}

}  // namespace anyprec::cli
