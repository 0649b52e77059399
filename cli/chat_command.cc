// anyprec chat: a conversation in the terminal with a running anyprec-server, through its
// OpenAI HTTP front. Each line typed is a user turn; the reply streams as it is made. Lines
// that start with '/' are commands: /bits B picks the width for the rest of the conversation
// (0: the tenant's default), /new starts a new conversation, /models lists the models, /quit
// ends (as does end of input). Ctrl-C stops a reply in progress; at the prompt it ends.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "proto/openai_client.h"

namespace anyprec::cli {
namespace {

using nlohmann::json;

std::atomic<bool> g_replying = false;
std::atomic<bool> g_interrupted = false;

void OnInterrupt(int) {
  if (!g_replying) _exit(130);
  g_interrupted = true;
}

// The model name that asks for `bits` (0: the plain name, the tenant's default width).
std::string ModelFor(const std::string& name, int bits) { return bits == 0 ? name : absl::StrCat(name, "@", bits); }

}  // namespace

void AddChatCommand(CLI::App& app, ChatOptions& o) {
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a running anyprec-server through its OpenAI HTTP front");
  cmd->add_option("--addr", o.address, "The server's HTTP address (--http-listen)")->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "Sent as 'Authorization: Bearer KEY'");
  cmd->add_option("--model", o.model, "Model name (default: the server's first, which takes the tenant's default width)");
  cmd->add_option("--bits", o.bits, "Width of the conversation; 0 takes the tenant's default (/bits B changes it)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  cmd->add_option("--system", o.system, "A system message that opens every conversation");
  cmd->add_option("--max-tokens", o.max_tokens, "Tokens per reply at most")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "Sampling temperature; 0 is greedy")->check(CLI::Range(0.0, 2.0))->capture_default_str();
  cmd->add_option("--top-p", o.top_p, "Nucleus sampling mass")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--seed", o.seed, "Random seed of each reply");
}

int RunChat(const ChatOptions& o) {
  OpenAIServer server;
  server.address = o.address;
  server.api_key = o.api_key;
  std::string model = o.model;
  if (model.empty()) {
    const absl::StatusOr<std::vector<std::string>> models = ListModels(server);
    if (!models.ok()) return ReportError(models.status(), 1);
    if (models->empty()) return ReportError(absl::UnavailableError(o.address + " serves no model"), 1);
    model = models->front();
  }
  int bits = o.bits;
  const bool interactive = isatty(STDIN_FILENO);
  struct sigaction action = {};
  action.sa_handler = OnInterrupt;
  sigaction(SIGINT, &action, nullptr);

  json messages = json::array();
  const auto open_conversation = [&] {
    messages = json::array();
    if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  };
  open_conversation();
  if (interactive) std::fprintf(stderr, "%s: chatting with %s; /bits B, /new, /models, /quit\n", o.address.c_str(), ModelFor(model, bits).c_str());
  std::string line;
  for (;;) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line.starts_with('/')) {
      const std::string command = line.substr(0, line.find(' '));
      const std::string argument = line.size() > command.size() ? line.substr(command.size() + 1) : "";
      if (command == "/quit" || command == "/exit") break;
      if (command == "/new") {
        open_conversation();
        std::fprintf(stderr, "(a new conversation)\n");
      } else if (command == "/bits") {
        int value = -1;
        const auto [end, error] = std::from_chars(argument.data(), argument.data() + argument.size(), value);
        if (error != std::errc() || end != argument.data() + argument.size() || value < 0) {
          std::fprintf(stderr, "/bits takes a width, or 0 for the tenant's default\n");
        } else {
          bits = value;
          std::fprintf(stderr, "(now %s)\n", ModelFor(model, bits).c_str());
        }
      } else if (command == "/models") {
        const absl::StatusOr<std::vector<std::string>> models = ListModels(server);
        if (!models.ok()) std::fprintf(stderr, "%s\n", std::string(models.status().message()).c_str());
        for (const std::string& m : models.value_or(std::vector<std::string>{})) std::printf("%s\n", m.c_str());
      } else {
        std::fprintf(stderr, "unknown command %s: /bits B, /new, /models, /quit\n", command.c_str());
      }
      continue;
    }

    messages.push_back({{"role", "user"}, {"content", line}});
    json body = {{"model", ModelFor(model, bits)},
                 {"messages", messages},
                 {"max_tokens", o.max_tokens},
                 {"temperature", o.temperature},
                 {"top_p", o.top_p},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}}};
    if (o.seed) body["seed"] = *o.seed;
    std::string reply, finish, served;
    json usage;
    g_interrupted = false;
    g_replying = true;
    const StreamEnd end = StreamOpenAI(server, "/v1/chat/completions", body, [&](const json& event) {
      if (g_interrupted) return false;
      served = event.value("model", served);
      if (event.contains("usage") && event["usage"].is_object()) usage = event["usage"];
      if (!event.contains("choices") || event["choices"].empty()) return true;
      const json& choice = event["choices"][0];
      if (choice.contains("delta") && choice["delta"].contains("content") && choice["delta"]["content"].is_string()) {
        const std::string text = choice["delta"]["content"].get<std::string>();
        reply += text;
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
      }
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) finish = choice["finish_reason"].get<std::string>();
      return true;
    });
    g_replying = false;
    if (end.http_status != 200) {
      // The turn did not happen: the conversation goes on without it.
      messages.erase(messages.end() - 1);
      const std::string why = end.http_status == 0 ? end.transport_error : end.error.value("message", std::string("error"));
      std::fprintf(stderr, "error%s: %s\n", end.http_status ? absl::StrCat(" ", end.http_status).c_str() : "", why.c_str());
      continue;
    }
    std::printf("\n");
    std::fflush(stdout);
    messages.push_back({{"role", "assistant"}, {"content", reply}});
    if (end.stopped) {
      std::fprintf(stderr, "[%s: stopped]\n", served.c_str());
    } else if (!end.done) {
      std::fprintf(stderr, "[%s: the reply broke off: %s]\n", served.c_str(), end.transport_error.c_str());
    } else {
      std::fprintf(stderr, "[%s: %s, %d tokens]\n", served.c_str(), finish.c_str(), usage.value("completion_tokens", 0));
    }
  }
  return 0;
}

}  // namespace anyprec::cli
