// anyprec-server: keeps one anyprec image resident and serves a logical model for every
// width in it over gRPC (anyprec.v1.Generation, grpc.health.v1.Health, reflection).
#include <csignal>
#include <cstdio>

#include "CLI/CLI.hpp"
#include "cli/model_bundle.h"
#include "cli/parse.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/generation_service.h"
#include "server/metrics.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

volatile std::sig_atomic_t g_signal = 0;

// Resident weight bytes as the engine holds them: re-tiled planes, fp32 and int8 LUTs, and
// fp32 dense tensors.
void ReportWeightBytes(const anyprec::Model& model, anyprec::server::ServerMetrics& metrics) {
  double planes = 0;
  double luts = 0;
  double dense = 0;
  const anyprec::ModelWeights& w = model.weights();
  for (const anyprec::LayerWeights& layer : w.layers) {
    for (const anyprec::Linear* linear : layer.linears()) {
      const anyprec::cpu::BitplaneView& q = linear->quantized;
      planes += static_cast<double>(q.max_bits) * q.plane_stride;
      for (int b = q.seed_bits; b <= q.max_bits; ++b) {
        luts += static_cast<double>(q.rows) * ((4 << b) + anyprec::cpu::BitplaneView::Int8LutStride(b) + 4);
      }
      dense += 4.0 * linear->bias.size();
    }
    dense += 4.0 * (layer.attn_norm.size() + layer.ffn_norm.size());
  }
  dense += 4.0 * (w.embedding.values.size() + w.final_norm.size());
  if (w.head.values.data() != w.embedding.values.data()) dense += 4.0 * w.head.values.size();
  metrics.WeightBytes("planes", planes);
  metrics.WeightBytes("luts", luts);
  metrics.WeightBytes("dense", dense);
}
void OnSignal(int signal) { g_signal = signal; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-server: serve every width of an anyprec image over gRPC"};
  anyprec::cli::ModelOptions model_options;
  std::string listen = "127.0.0.1:50051";
  int default_bits = 0;
  double shutdown_grace = 30;
  anyprec::server::SchedulerOptions scheduler_options;
  anyprec::cli::AddModelOptions(app, model_options);
  app.add_option("--listen", listen, "gRPC address; port 0 picks a free one")->capture_default_str();
  std::string metrics_listen = "127.0.0.1:9464";
  app.add_option("--metrics-listen", metrics_listen, "Prometheus /metrics address")->capture_default_str();
  app.add_option("--default-bits", default_bits, "Width of requests that name none (default: the image's widest)")->check(CLI::Range(1, 8));
  app.add_option("--max-running", scheduler_options.max_running, "Requests decoded together")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--max-queued", scheduler_options.max_queued, "Waiting requests; past it, RESOURCE_EXHAUSTED")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--kv-cache-tokens", scheduler_options.kv_cache_tokens, "KV positions for all running requests together")
      ->check(CLI::Range(1l, 1l << 32))
      ->capture_default_str();
  app.add_option("--step-tokens", scheduler_options.step_tokens, "Prompt tokens one engine step may take (chunked prefill)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--shutdown-grace", shutdown_grace, "Seconds in-flight requests may run on after SIGTERM")->capture_default_str();
  anyprec::cli::AddExactKernelsFlag(app, scheduler_options.exact_kernels);
  if (const auto exit_code = anyprec::cli::ParseOrExitCode(app, argc, argv)) return *exit_code;
  spdlog::set_default_logger(spdlog::stderr_color_mt("anyprec-server"));

  auto bundle = anyprec::cli::LoadModelBundle(model_options);
  if (!bundle.ok()) {
    spdlog::error("{}", std::string(bundle.status().message()));
    return 1;
  }
  const anyprec::ModelConfig& config = bundle->model.config();
  if (!config.quantization) {
    spdlog::error("{}: not an anyprec image (quantize it with anyprec-quantize)", model_options.model_dir);
    return 1;
  }
  if (default_bits == 0) default_bits = config.quantization->max_bits;
  if (default_bits < config.quantization->seed_bits || default_bits > config.quantization->max_bits) {
    spdlog::error("--default-bits {} is outside the image's widths {}..{}", default_bits, config.quantization->seed_bits,
                  config.quantization->max_bits);
    return 2;
  }

  auto metrics = anyprec::server::ServerMetrics::Start(metrics_listen);
  if (!metrics.ok()) {
    spdlog::error("{}", std::string(metrics.status().message()));
    return 1;
  }
  ReportWeightBytes(bundle->model, **metrics);
  anyprec::server::Scheduler scheduler(bundle->model, bundle->tokenizer, scheduler_options, metrics->get());
  anyprec::server::GenerationService service(bundle->model, bundle->tokenizer, scheduler, {default_bits, 4096}, metrics->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}", listen);
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  const std::string host = listen.substr(0, listen.rfind(':'));
  const std::string metrics_host = metrics_listen.substr(0, metrics_listen.rfind(':'));
  spdlog::info("serving {} widths {}..{} (default {}) on {}:{}, metrics on {}:{}/metrics", bundle->model.name(),
               config.quantization->seed_bits, config.quantization->max_bits, default_bits, host, port, metrics_host,
               (*metrics)->port());
  std::printf("listening on %s:%d, metrics on %s:%d\n", host.c_str(), port, metrics_host.c_str(), (*metrics)->port());
  std::fflush(stdout);

  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));

  spdlog::info("signal {}: draining for up to {} s", static_cast<int>(g_signal), shutdown_grace);
  server->GetHealthCheckService()->SetServingStatus(false);
  scheduler.StopAccepting();
  const auto grace_end = anyprec::server::Clock::now() + std::chrono::milliseconds(static_cast<long>(shutdown_grace * 1000));
  scheduler.WaitIdle(grace_end);
  scheduler.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  spdlog::info("stopped");
  return 0;
}
