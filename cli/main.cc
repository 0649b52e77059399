// anyprec: run any-precision LLMs from the command line.
#include "CLI/CLI.hpp"
#include "cli/commands.h"
#include "flags/parse.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace anyprec::cli {

int ReportError(const absl::Status& status, int exit_code) {
  spdlog::error("{}", std::string(status.message()));
  return exit_code;
}

}  // namespace anyprec::cli

int main(int argc, char** argv) {
  // stdout carries the generated text; diagnostics go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("anyprec"));
  spdlog::set_pattern("anyprec: %^%l%$: %v");
  CLI::App app{"anyprec: one model, quantized once, served at every precision"};
  app.require_subcommand(1);
  anyprec::cli::GenerateOptions generate;
  anyprec::cli::EvalOptions eval;
  anyprec::cli::InspectOptions inspect;
  anyprec::cli::ClientOptions client;
  anyprec::cli::TokenizeOptions tokenize;
  anyprec::cli::RenderChatOptions render_chat;
  anyprec::cli::ChatOptions chat;
  anyprec::cli::AddGenerateCommand(app, generate);
  anyprec::cli::AddEvalCommand(app, eval);
  anyprec::cli::AddInspectCommand(app, inspect);
  anyprec::cli::AddClientCommand(app, client);
  anyprec::cli::AddTokenizeCommand(app, tokenize);
  anyprec::cli::AddRenderChatCommand(app, render_chat);
  anyprec::cli::AddChatCommand(app, chat);
  if (const auto exit_code = anyprec::flags::ParseOrExitCode(app, argc, argv)) return *exit_code;
  if (app.got_subcommand("generate")) return anyprec::cli::RunGenerate(generate);
  if (app.got_subcommand("inspect")) return anyprec::cli::RunInspect(inspect);
  if (app.got_subcommand("client")) return anyprec::cli::RunClient(client);
  if (app.got_subcommand("tokenize")) return anyprec::cli::RunTokenize(tokenize);
  if (app.got_subcommand("render-chat")) return anyprec::cli::RunRenderChat(render_chat);
  if (app.got_subcommand("chat")) return anyprec::cli::RunChat(chat);
  return anyprec::cli::RunEval(eval);
}
