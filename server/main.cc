// anyprec-server: keeps one anyprec image resident and serves a logical model for every
// width in it over gRPC (anyprec.v1.Generation and Admin, grpc.health.v1.Health,
// reflection), with tenants from a TOML file and Prometheus metrics.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "flags/engine_flags.h"
#include "flags/parse.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/admin_service.h"
#include "engine/chat/chat_template.h"
#include "server/generation_service.h"
#include "server/http_front.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/tenants.h"
#include "server/watchdog.h"

namespace {

namespace server = anyprec::server;
using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_reload = 0;
volatile std::sig_atomic_t g_serving = 0;

// Before the server serves there is nothing to drain, and loading a large image takes minutes
// that a stop (a container's PID 1 gets no default action) should not wait out.
void OnStopSignal(int signal) {
  if (g_serving == 0) std::_Exit(128 + signal);
  g_stop_signal = signal;
}
void OnReloadSignal(int) { g_reload = 1; }

// One token through every width, so that the first request does not pay for faulting in
// the image or starting the thread pool, and so that a device that cannot run the model
// stops the start-up instead of failing every request.
absl::Status WarmUp(const anyprec::Engine& engine) {
  const anyprec::ModelConfig& c = engine.model().config();
  anyprec::Transformer transformer(engine.model(), engine.device());
  std::vector<float> logits(c.vocab_size);
  const anyprec::TokenId token = std::max(engine.bos(), 0);
  for (int bits = c.quantization->seed_bits; bits <= c.quantization->max_bits; ++bits) {
    anyprec::KvCache cache(c, 1, engine.kv_dtype());
    if (absl::Status s = transformer.Forward(std::span<const anyprec::TokenId>(&token, 1), cache, anyprec::LogitsFor::kLastToken, logits,
                                             {bits});
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::optional<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.starts_with("127.");
}

// `anyprec-server hash-key`: the tenants file's form of the API key read from stdin.
int HashKey() {
  std::string key;
  std::getline(std::cin, key);
  if (key.empty()) {
    std::fprintf(stderr, "anyprec-server hash-key: give the key on stdin, e.g. echo -n KEY | anyprec-server hash-key\n");
    return 2;
  }
  std::printf("%s\n", server::HashApiKey(key).c_str());
  return 0;
}

// Every flag of anyprec-server but the subcommand.
struct ServerFlags {
  anyprec::EngineOptions engine;
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string http_listen = "127.0.0.1:8000";
  std::string chat_template_path;
  std::string tenants_path;
  std::string api_key_dir;
  std::string tls_cert;
  std::string tls_key;
  std::string log_format = "text";
  std::optional<int> default_bits;  // without --tenants; none: the widest
  std::optional<int> speculative_draft_bits;  // set: requests decode speculatively by default
  int speculative_lookahead = anyprec::kDefaultLookahead;
  double slo_ttft_ms = 2000;
  double slo_tpot_ms = 150;
  double shutdown_grace = 30;
  double max_connection_age = 0;
  double watchdog_seconds = 60;
  server::SchedulerOptions scheduler;
};

void AddServerFlags(CLI::App& app, ServerFlags& f) {
  anyprec::flags::AddEngineOptions(app, f.engine);
  app.add_option("--listen", f.listen, "gRPC address; port 0 picks a free one")->capture_default_str();
  app.add_option("--metrics-listen", f.metrics_listen, "Prometheus /metrics address")->capture_default_str();
  app.add_option("--http-listen", f.http_listen,
                 "OpenAI-compatible HTTP address (/v1/models, /v1/completions, /v1/chat/completions); empty: none; port 0 "
                 "picks a free one")
      ->capture_default_str();
  app.add_option("--chat-template", f.chat_template_path,
                 "Jinja chat template for /v1/chat/completions instead of the model's own (tokenizer_config.json or "
                 "chat_template.jinja)")
      ->check(CLI::ExistingFile);
  app.add_option("--tenants", f.tenants_path,
                 "Tenants file (TOML, docs/TENANTS.md); without one, anonymous requests are served, on loopback only")
      ->check(CLI::ExistingFile);
  app.add_option("--api-keys", f.api_key_dir,
                 "Folder of API key files, one per tenant (or admin) named after it, keys in plain text one per line, "
                 "e.g. a mounted Kubernetes Secret; added to the tenants file's keys and reread on SIGHUP")
      ->check(CLI::ExistingDirectory)
      ->needs("--tenants");
  app.add_option("--default-bits", f.default_bits, "Without --tenants: the width of requests that name none (default: the widest)")
      ->check(CLI::Range(1, 8));
  app.add_option("--tls-cert", f.tls_cert, "PEM certificate chain: serve gRPC over TLS (with --tls-key)")->check(CLI::ExistingFile);
  app.add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  server::SchedulerOptions& scheduler = f.scheduler;
  app.add_option("--max-running", scheduler.max_running, "Requests decoded together")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--max-queued", scheduler.max_queued, "Waiting requests; past it, RESOURCE_EXHAUSTED")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  scheduler.kv_cache_tokens = 0;
  app.add_option("--kv-cache-tokens", scheduler.kv_cache_tokens,
                 "KV positions in the block pool, all requests together (default: 65536, or what fits in a quarter of memory)")
      ->check(CLI::Range(1l, 1l << 32));
  app.add_option("--kv-block-tokens", scheduler.kv_block_tokens, "KV positions per block of the pool")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--step-tokens", scheduler.step_tokens, "Prompt tokens one engine step may take (chunked prefill)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_flag("--prefix-cache,!--no-prefix-cache", scheduler.prefix_cache,
               "Requests whose context starts as an earlier one's did, at the same width, reuse its KV blocks")
      ->capture_default_str();
  app.add_option("--speculative-draft-bits", f.speculative_draft_bits,
                 "Requests that name no speculation (of tenants without a default) decode speculatively, drafting at this "
                 "width, where it is below theirs")
      ->check(CLI::Range(1, 64));
  app.add_option("--speculative-lookahead", f.speculative_lookahead, "Tokens drafted per verify step, with --speculative-draft-bits")
      ->check(CLI::Range(1, anyprec::kMaxLookahead))
      ->capture_default_str();
  app.add_option("--slo-ttft-ms", f.slo_ttft_ms,
                 "Time to first token that adaptive requests are served to keep, where their tenant sets none (docs/TENANTS.md)")
      ->check(CLI::Range(1.0, 86400e3))
      ->capture_default_str();
  app.add_option("--slo-tpot-ms", f.slo_tpot_ms, "Time per output token that adaptive requests are served to keep, where their tenant sets none")
      ->check(CLI::Range(1.0, 86400e3))
      ->capture_default_str();
  app.add_option("--shutdown-grace", f.shutdown_grace, "Seconds in-flight requests may run on after SIGTERM")->capture_default_str();
  app.add_option("--max-connection-age", f.max_connection_age,
                 "Seconds after which a client connection is asked to reconnect (GOAWAY; its streams run on), so that "
                 "clients balancing over DNS find new replicas; 0: never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--watchdog-seconds", f.watchdog_seconds, "An engine step longer than this marks the server NOT_SERVING")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--log-format", f.log_format, "text or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_flag("--group-by-bits", scheduler.group_by_bits,
               "Run each width as a batch of its own instead of one mixed pass (for benchmarks)");
}

std::string HostOf(const std::string& address) { return address.substr(0, address.rfind(':')); }

// What is wrong with flags that parsed but do not go together, if anything.
std::optional<std::string> FlagsConflict(const ServerFlags& f) {
  if (f.tls_cert.empty() != f.tls_key.empty()) return "--tls-cert and --tls-key go together";
  if (f.scheduler.kv_cache_tokens != 0 && f.scheduler.kv_cache_tokens < f.scheduler.kv_block_tokens) {
    return "--kv-cache-tokens must hold at least one block of --kv-block-tokens";
  }
  if (f.tenants_path.empty() && !IsLoopback(HostOf(f.listen))) {
    return "without --tenants the server takes anonymous requests, so it listens on loopback only (--listen " + f.listen + ")";
  }
  if (f.tenants_path.empty() && !f.http_listen.empty() && !IsLoopback(HostOf(f.http_listen))) {
    return "without --tenants the server takes anonymous requests, so it listens on loopback only (--http-listen " + f.http_listen + ")";
  }
  return std::nullopt;
}

// The tenants file's tenants, or without one the anonymous tenant at --default-bits (a usage
// error, exit code 2, when outside the image's widths; 1 when the file cannot be loaded).
std::unique_ptr<server::TenantRegistry> OpenTenants(const ServerFlags& f, const anyprec::WidthRange& widths, int& exit_code) {
  if (f.tenants_path.empty()) {
    const int default_bits = f.default_bits.value_or(widths.max);
    if (const absl::Status checked = widths.Check(default_bits, "--default-bits", "the image's"); !checked.ok()) {
      server::Log(err, std::string(checked.message()));
      exit_code = 2;
      return nullptr;
    }
    return server::TenantRegistry::Open(widths, default_bits);
  }
  if (f.default_bits) server::Log(warn, "--default-bits is ignored: the tenants file sets each tenant's default");
  auto loaded = server::TenantRegistry::Load(f.tenants_path, widths, f.api_key_dir);
  if (!loaded.ok()) {
    server::Log(err, std::string(loaded.status().message()));
    exit_code = 1;
    return nullptr;
  }
  return *std::move(loaded);
}

// The gRPC server with the services on --listen (TLS with --tls-cert), and the port it got;
// null, having logged why, when it cannot start.
std::unique_ptr<grpc::Server> StartGrpc(const ServerFlags& f, const std::vector<grpc::Service*>& services, int& port) {
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!f.tls_cert.empty()) {
    const std::optional<std::string> cert = ReadText(f.tls_cert);
    const std::optional<std::string> key = ReadText(f.tls_key);
    if (!cert || !key) {
      server::Log(err, "cannot read the TLS certificate or key", {{"cert", f.tls_cert}, {"key", f.tls_key}});
      return nullptr;
    }
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(options);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(f.listen, credentials, &port);
  // gRPC binds with SO_REUSEPORT by default: a second server on a port already served would
  // start and silently split its traffic (an old version still answering after a deploy).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (f.max_connection_age > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, static_cast<int>(std::min(f.max_connection_age * 1000, 2e9)));
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (!grpc_server || port == 0) {
    server::Log(err, "cannot listen: the address is in use or not this host's", {{"listen", f.listen}});
    return nullptr;
  }
  return grpc_server;
}

// The chat template /v1/chat/completions renders: --chat-template, else the model's own (its
// tokenizer_config.json or chat_template.jinja); nullopt, having said so, when there is none or
// it does not parse: chat requests are then refused with that reason, completions still served.
std::optional<anyprec::ModelChatTemplate> LoadServedChatTemplate(const ServerFlags& f, const anyprec::Tokenizer& tokenizer,
                                                                 const anyprec::ModelConfig& config, int& exit_code) {
  absl::StatusOr<anyprec::ModelChatTemplate> own = anyprec::LoadChatTemplate(f.engine.model_dir);
  if (f.chat_template_path.empty()) {
    if (own.ok()) return *std::move(own);
    server::Log(own.status().code() == absl::StatusCode::kNotFound ? info : warn,
                "no chat template: /v1/chat/completions is refused, /v1/completions served", {{"reason", std::string(own.status().message())}});
    return std::nullopt;
  }
  const std::optional<std::string> source = ReadText(f.chat_template_path);
  absl::StatusOr<anyprec::ChatTemplate> parsed =
      source ? anyprec::ChatTemplate::Parse(*source, f.chat_template_path) : absl::NotFoundError(f.chat_template_path + ": cannot read");
  if (!parsed.ok()) {
    server::Log(err, std::string(parsed.status().message()));
    exit_code = 1;
    return std::nullopt;
  }
  // The special tokens' text: the folder's tokenizer_config.json's, else the config's ids' pieces.
  const auto piece = [&](int id) { return id >= 0 ? std::optional<std::string>(tokenizer.Piece(id)) : std::nullopt; };
  return anyprec::ModelChatTemplate{*std::move(parsed), own.ok() ? own->bos_token : piece(config.bos_token_id),
                                    own.ok() ? own->eos_token : piece(config.eos_token_ids.empty() ? -1 : config.eos_token_ids.front())};
}

// Until SIGTERM or SIGINT: rereads the tenants on SIGHUP.
void ServeUntilStopped(server::TenantRegistry& tenants, server::ServerMetrics& metrics) {
  while (g_stop_signal == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_reload == 0) continue;
    g_reload = 0;
    const absl::Status reloaded = tenants.Reload();
    metrics.TenantsReloaded(reloaded.ok());
    if (reloaded.ok()) {
      server::Log(info, "tenants reloaded", {{"tenants", tenants.path()}, {"tenant_count", tenants.policy()->tenants.size()}});
    } else {
      server::Log(err, "tenants not reloaded; the previous ones stay in force", {{"error", std::string(reloaded.message())}});
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "hash-key") return HashKey();
  CLI::App app{"anyprec-server: serve every width of an anyprec image over gRPC\n(`anyprec-server hash-key` < KEY prints an API key's hash for the tenants file)"};
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGINT, OnStopSignal);
  // A client that leaves mid-answer makes the HTTP front's next write fail, which it handles;
  // the signal that write raises would end the server.
  std::signal(SIGPIPE, SIG_IGN);
  ServerFlags flags;
  AddServerFlags(app, flags);
  if (const auto exit_code = anyprec::flags::ParseOrExitCode(app, argc, argv)) return *exit_code;
  server::SetUpLogging(flags.log_format == "json" ? server::LogFormat::kJson : server::LogFormat::kText);
  if (const std::optional<std::string> conflict = FlagsConflict(flags)) {
    server::Log(err, *conflict);
    return 2;
  }

  auto opened = anyprec::Engine::Open(flags.engine);
  if (!opened.ok()) {
    server::Log(err, std::string(opened.status().message()));
    return 1;
  }
  const anyprec::Engine& engine = **opened;
  const anyprec::Model& model = engine.model();
  const anyprec::ModelConfig& config = model.config();
  if (!config.quantization) {
    server::Log(err, flags.engine.model_dir + ": not an anyprec image (quantize it with anyprec-quantize)");
    return 1;
  }
  server::SchedulerOptions& scheduler_options = flags.scheduler;
  scheduler_options.kv_dtype = engine.kv_dtype();
  if (scheduler_options.kv_cache_tokens == 0) {
    scheduler_options.kv_cache_tokens =
        server::KvPoolTokens(config, scheduler_options.kv_block_tokens, engine.kv_dtype(), engine.device_memory_bytes());
  }
  const anyprec::WidthRange widths = anyprec::ModelWidths(config);
  int exit_code = 0;
  const std::unique_ptr<server::TenantRegistry> tenants = OpenTenants(flags, widths, exit_code);
  if (!tenants) return exit_code;
  server::ServiceConfig service_config;
  service_config.slo = {.ttft_seconds = flags.slo_ttft_ms / 1e3, .tpot_seconds = flags.slo_tpot_ms / 1e3};
  if (flags.speculative_draft_bits) {
    if (const absl::Status checked = widths.Check(*flags.speculative_draft_bits, "--speculative-draft-bits", "the image's"); !checked.ok()) {
      server::Log(err, std::string(checked.message()));
      return 2;
    }
    service_config.speculative = anyprec::SpeculativeOptions{*flags.speculative_draft_bits, flags.speculative_lookahead};
  }

  auto metrics = server::ServerMetrics::Start(flags.metrics_listen);
  if (!metrics.ok()) {
    server::Log(err, std::string(metrics.status().message()));
    return 1;
  }
  const anyprec::WeightBytes weight_bytes = engine.device().weight_bytes();
  (*metrics)->WeightBytes("planes", weight_bytes.planes);
  (*metrics)->WeightBytes("luts", weight_bytes.luts);
  (*metrics)->WeightBytes("dense", weight_bytes.dense);
  if (const absl::Status warm = WarmUp(engine); !warm.ok()) {
    server::Log(err, "warm-up failed", {{"device", engine.device_summary()}, {"error", std::string(warm.message())}});
    return 1;
  }

  server::Scheduler scheduler(model, engine.device(), engine.tokenizer(), scheduler_options, metrics->get());
  server::GenerationService generation(model, engine.tokenizer(), scheduler, *tenants, service_config, metrics->get());
  server::AdminService admin(*tenants);
  int port = 0;
  const std::unique_ptr<grpc::Server> grpc_server = StartGrpc(flags, {&generation, &admin}, port);
  if (!grpc_server) return 1;
  const std::optional<anyprec::ModelChatTemplate> chat = LoadServedChatTemplate(flags, engine.tokenizer(), config, exit_code);
  if (exit_code != 0) return exit_code;
  std::unique_ptr<server::HttpFront> http;
  if (!flags.http_listen.empty()) {
    const server::openai::ServedModel served{&model, &engine.tokenizer(), chat ? &*chat : nullptr, service_config.max_new_tokens_limit};
    auto started = server::HttpFront::Start(flags.http_listen, served, generation, scheduler, *tenants, metrics->get());
    if (!started.ok()) {
      server::Log(err, std::string(started.status().message()));
      return 1;
    }
    http = *std::move(started);
  }
  grpc::HealthCheckServiceInterface* health = grpc_server->GetHealthCheckService();
  std::atomic<bool> draining = false;
  std::atomic<bool> stalled = false;
  const auto update_health = [&] { health->SetServingStatus(!draining && !stalled); };
  update_health();
  server::Watchdog watchdog([&] { return scheduler.step_started(); },
                            std::chrono::duration_cast<server::Clock::duration>(std::chrono::duration<double>(flags.watchdog_seconds)),
                            std::chrono::milliseconds(100), [&](bool now_stalled) {
                              stalled = now_stalled;
                              update_health();
                              (*metrics)->EngineStalled(now_stalled);
                              server::Log(now_stalled ? err : info,
                                          now_stalled ? "engine loop stalled: health NOT_SERVING" : "engine loop moving again: health SERVING",
                                          {{"watchdog_seconds", flags.watchdog_seconds}});
                            });

  const std::string host = HostOf(flags.listen);
  const std::string metrics_host = HostOf(flags.metrics_listen);
  const long kv_blocks = scheduler.kv_blocks();
  const double kv_bytes = static_cast<double>(anyprec::KvBlockPool::BytesPerPosition(config, engine.kv_dtype())) * kv_blocks * scheduler_options.kv_block_tokens;
  const std::shared_ptr<const server::TenantPolicy> policy = tenants->policy();
  server::Log(info, "serving",
              {{"model", model.name()},
               {"device", engine.device_summary()},
               {"image", flags.engine.model_dir},
               {"widths", widths.ToString()},
               {"weight_mib", static_cast<double>(weight_bytes.total()) / (1 << 20)},
               {"kv_cache_mib", kv_bytes / (1 << 20)},
               {"kv_blocks", kv_blocks},
               {"tenants", tenants->has_file() ? flags.tenants_path : std::string("none (anonymous, loopback)")},
               {"tenant_count", policy->tenants.size()},
               {"anonymous", policy->anonymous_tenant.value_or("not allowed")},
               {"grpc", host + ":" + std::to_string(port)},
               {"tls", !flags.tls_cert.empty()},
               {"metrics", metrics_host + ":" + std::to_string((*metrics)->port()) + "/metrics"},
               {"http", http ? HostOf(flags.http_listen) + ":" + std::to_string(http->port()) : std::string("off")},
               {"chat_template", chat ? chat->chat_template.name() : std::string("none")},
               {"speculative", service_config.speculative ? absl::StrCat("draft ", service_config.speculative->draft_bits, " bits, lookahead ",
                                                                         service_config.speculative->lookahead)
                                                          : std::string("off unless asked")},
               {"slo", absl::StrCat("ttft ", flags.slo_ttft_ms, " ms, tpot ", flags.slo_tpot_ms, " ms (adaptive requests of tenants without their own)")}});
  // Before the line that tells callers the server is up, so that no signal finds the defaults.
  g_serving = 1;
  std::signal(SIGHUP, OnReloadSignal);
  std::printf("listening on %s:%d, metrics on %s:%d", host.c_str(), port, metrics_host.c_str(), (*metrics)->port());
  if (http) std::printf(", http on %s:%d", HostOf(flags.http_listen).c_str(), http->port());
  std::printf("\n");
  std::fflush(stdout);

  ServeUntilStopped(*tenants, **metrics);

  server::Log(info, "draining", {{"signal", static_cast<int>(g_stop_signal)}, {"grace_seconds", flags.shutdown_grace}});
  draining = true;
  update_health();
  scheduler.StopAccepting();
  // Shutdown sends GOAWAY at once, so that clients balancing over several replicas take their
  // next requests elsewhere, and returns when the streams in flight, which the engine loop goes
  // on serving, have finished, or at the end of the grace, cancelling those left.
  const auto grace = std::chrono::milliseconds(static_cast<long>(flags.shutdown_grace * 1000));
  grpc_server->Shutdown(std::chrono::system_clock::now() + grace);
  scheduler.WaitIdle(server::Clock::now() + std::chrono::seconds(2));
  scheduler.Stop();
  http.reset();  // its streams have ended with the scheduler's requests
  server::Log(info, "stopped");
  return 0;
}
