// The server's log: spdlog on stderr, either as text ("message key=value ...") or as one
// JSON object per line (--log-format json) for log collectors.
#pragma once

#include <string_view>

#include "nlohmann/json.hpp"
#include "spdlog/common.h"

namespace anyprec::server {

enum class LogFormat { kText, kJson };

// Installs the server's default logger; call once at start-up.
void SetUpLogging(LogFormat format);

// `fields` is a JSON object whose members follow the message.
void Log(spdlog::level::level_enum level, std::string_view message, const nlohmann::json& fields = nlohmann::json::object());

}  // namespace anyprec::server
