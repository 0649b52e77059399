#include "server/logging.h"

#include <grpc/support/log.h>

#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace anyprec::server {
namespace {

LogFormat g_format = LogFormat::kText;

// Invalid UTF-8 in a field becomes U+FFFD rather than an exception.
std::string Dump(const nlohmann::json& value) { return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// gRPC's own messages (e.g. failed TLS handshakes) join the server's log in its format.
void LogFromGrpc(gpr_log_func_args* args) {
  const spdlog::level::level_enum level = args->severity == GPR_LOG_SEVERITY_ERROR ? spdlog::level::err
                                          : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                                                    : spdlog::level::debug;
  Log(level, args->message, {{"source", "grpc"}, {"file", args->file}, {"line", args->line}});
}

}  // namespace

void SetUpLogging(LogFormat format) {
  g_format = format;
  auto logger = spdlog::stderr_color_mt("anyprec-server");
  if (format == LogFormat::kJson) {
    // Each message is the rest of the object: "msg":..., then its fields.
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
  }
  spdlog::set_default_logger(std::move(logger));
  gpr_set_log_function(LogFromGrpc);
}

void Log(spdlog::level::level_enum level, std::string_view message, const nlohmann::json& fields) {
  std::string line;
  if (g_format == LogFormat::kJson) {
    line = "\"msg\":" + Dump(message);
    for (const auto& [key, value] : fields.items()) line += "," + Dump(key) + ":" + Dump(value);
  } else {
    line = message;
    for (const auto& [key, value] : fields.items()) {
      line += " " + key + "=" + (value.is_string() ? value.get<std::string>() : Dump(value));
    }
  }
  spdlog::log(level, "{}", line);
}

}  // namespace anyprec::server
