// anyprec-synthesize: a Hugging Face folder of any family the engine runs, with random
// weights, from a config (e.g. Llama-3.1-8B's shapes with fewer layers), for benchmarks at
// realistic sizes where no real checkpoint can be downloaded. The tensors are the family's:
// biases, q/k norms, Phi-3's fused projections, Gemma's norms stored as w for a gain 1 + w.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "CLI/CLI.hpp"
#include "flags/parse.h"
#include "engine/base/mapped_file.h"
#include "engine/model/arch.h"
#include "engine/model/float_convert.h"
#include "engine/model/model_config.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;

// Normal(0, stddev) weights as BF16, deterministic in (seed, tensor index) whatever the threads.
std::vector<uint16_t> RandomBf16(size_t count, float stddev, uint64_t seed) {
  std::vector<uint16_t> out(count);
  constexpr size_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
  for (size_t chunk = 0; chunk < (count + kChunk - 1) / kChunk; ++chunk) {
    std::mt19937_64 rng(seed * 1000003 + chunk);
    std::normal_distribution<float> dist(0.0f, stddev);
    for (size_t i = chunk * kChunk; i < std::min(count, (chunk + 1) * kChunk); ++i) out[i] = anyprec::F32ToBF16(dist(rng));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-synthesize: a model folder of a family the engine runs, with random BF16 weights"};
  std::string config_path;
  std::string out_dir;
  int layers = 0;
  uint64_t seed = 1;
  app.add_option("--config", config_path, "A Hugging Face config.json (a family the engine runs)")->required()->check(CLI::ExistingFile);
  app.add_option("--out", out_dir, "Model folder to write")->required();
  app.add_option("--layers", layers, "Decoder layers (default: the config's)")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "Random seed")->capture_default_str();
  if (const auto exit_code = anyprec::flags::ParseOrExitCode(app, argc, argv)) return *exit_code;
  const auto fail = [](const std::string& message) {
    std::fprintf(stderr, "anyprec-synthesize: error: %s\n", message.c_str());
    return 1;
  };
  auto text = anyprec::ReadTextFile(config_path);
  if (!text.ok()) return fail(std::string(text.status().message()));
  nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) return fail(config_path + ": not a JSON object");
  if (layers > 0) config["num_hidden_layers"] = layers;
  config["torch_dtype"] = "bfloat16";
  auto parsed = anyprec::ParseModelConfig(config.dump(), config_path);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  const anyprec::ModelConfig& c = *parsed;

  // Planned first, then made and written one at a time: a full-size model need not fit in memory.
  struct Tensor {
    float stddev;  // of Normal(0, stddev) weights; 0 for a norm weight
  };
  std::vector<anyprec::SafetensorsWriter::Planned> plan;
  std::vector<Tensor> tensors;
  const auto add = [&](std::string name, std::vector<int64_t> shape, float stddev) {
    plan.push_back({std::move(name), anyprec::DType::kBF16, std::move(shape)});
    tensors.push_back({stddev});
  };
  namespace arch = anyprec::arch;
  add(std::string(arch::kEmbeddingTensor), {c.vocab_size, c.hidden_size}, 0.02f);
  if (!c.tie_word_embeddings) add(std::string(arch::kHeadTensor), {c.vocab_size, c.hidden_size}, 0.02f);
  add(std::string(arch::kFinalNormTensor), {c.hidden_size}, 0);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    add(arch::LayerTensor(layer, arch::kAttentionNorm) + ".weight", {c.hidden_size}, 0);
    add(arch::LayerTensor(layer, arch::kMlpNorm) + ".weight", {c.hidden_size}, 0);
    if (c.qk_norm) {
      add(arch::LayerTensor(layer, arch::kQueryNorm) + ".weight", {c.head_dim}, 0);
      add(arch::LayerTensor(layer, arch::kKeyNorm) + ".weight", {c.head_dim}, 0);
    }
    for (int j = 0; j < arch::kLinearsPerLayer; ++j) {
      const auto [rows, cols] = arch::Shape(c, j);
      const std::string prefix = arch::LayerTensor(layer, arch::kLinears[j].name);
      if (arch::HasBias(c, arch::kLinears[j].id)) add(prefix + ".bias", {rows}, 0.02f);
      if (!c.fused_projections || arch::kLinears[j].fused.empty()) {
        add(prefix + ".weight", {rows, cols}, 0.02f);
      } else if (const auto [before, fused_rows] = arch::FusedRows(c, j); before == 0) {
        add(arch::LayerTensor(layer, arch::kLinears[j].fused) + ".weight", {fused_rows, cols}, 0.02f);  // once, at its first part
      }
    }
  }

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return fail(out_dir + ": " + ec.message());
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  auto writer = anyprec::SafetensorsWriter::Create((fs::path(out_dir) / "model.safetensors").string(), plan, metadata);
  if (!writer.ok()) return fail(std::string(writer.status().message()));
  for (size_t i = 0; i < plan.size(); ++i) {
    size_t count = 1;
    for (const int64_t d : plan[i].shape) count *= d;
    // Norm weights whose gain is 1 (w = 0 where the family multiplies by 1 + w).
    const std::vector<uint16_t> values = tensors[i].stddev > 0 ? RandomBf16(count, tensors[i].stddev, seed + i)
                                                               : std::vector<uint16_t>(count, anyprec::F32ToBF16(1.0f - c.norm_weight_offset));
    if (auto s = writer->Append(std::as_bytes(std::span<const uint16_t>(values))); !s.ok()) return fail(std::string(s.message()));
  }
  if (auto s = writer->Finish(metadata); !s.ok()) return fail(std::string(s.message()));
  std::ofstream(fs::path(out_dir) / "config.json") << config.dump(2) << "\n";
  std::fprintf(stderr, "anyprec-synthesize: wrote %s\n", out_dir.c_str());
  return 0;
}
