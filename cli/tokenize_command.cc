#include <cstdio>

#include "cli/commands.h"
#include "engine/base/mapped_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {
namespace {

// `piece` with backslashes and control characters (C0, DEL and C1) escaped, so that each token
// stays on its line and its whitespace can be seen.
std::string EscapePiece(std::string_view piece) {
  std::string out;
  const auto append_code = [&out](const char* format, unsigned char code) {
    char escaped[8];
    std::snprintf(escaped, sizeof(escaped), format, code);
    out += escaped;
  };
  for (size_t i = 0; i < piece.size(); ++i) {
    const auto b = static_cast<unsigned char>(piece[i]);
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b < 0x20 || b == 0x7F) {
      append_code("\\x%02X", b);
    } else if (b == 0xC2 && i + 1 < piece.size() && static_cast<unsigned char>(piece[i + 1]) < 0xA0 &&
               static_cast<unsigned char>(piece[i + 1]) >= 0x80) {
      append_code("\\u%04X", static_cast<unsigned char>(piece[++i]));  // U+0080..U+009F
    } else {
      out += piece[i];
    }
  }
  return out;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, TokenizeOptions& o) {
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids (and pieces) of a text");
  CLI::Option_group* source = cmd->add_option_group("tokenizer", "Where the tokenizer comes from (--tokenizer wins)");
  source->add_option("--model", o.model_dir, "Model folder: its tokenizer.json, else its tokenizer.bin")->check(CLI::ExistingDirectory);
  source->add_option("--tokenizer", o.tokenizer_path, "tokenizer.json or llama2.c tokenizer.bin")->check(CLI::ExistingFile);
  source->require_option(1, 2);
  CLI::Option_group* input = cmd->add_option_group("input", "The text: exactly one of --text and --file");
  input->add_option("--text", o.text, "Text to tokenize");
  input->add_option("--file", o.text_path, "UTF-8 file to tokenize whole")->check(CLI::ExistingFile);
  input->require_option(1);
  cmd->add_flag("--no-special", o.no_special, "Without the special tokens the tokenizer adds around a text (e.g. BOS)");
  cmd->add_flag("--json", o.json, "Print one JSON object: {\"ids\", \"pieces\"}");
}

int RunTokenize(const TokenizeOptions& o) {
  std::string path = o.tokenizer_path;
  if (path.empty()) {
    auto found = Tokenizer::FindInFolder(o.model_dir);
    if (!found.ok()) return ReportError(found.status(), 1);
    path = *found;
  }
  auto tokenizer = Tokenizer::Load(path);
  if (!tokenizer.ok()) return ReportError(tokenizer.status(), 1);
  std::string text = o.text;
  if (!o.text_path.empty()) {
    auto read = ReadTextFile(o.text_path);
    if (!read.ok()) return ReportError(read.status(), 1);
    text = std::move(*read);
  }
  const std::vector<TokenId> ids = o.no_special ? tokenizer->Encode(text) : tokenizer->EncodeWithSpecialTokens(text);
  if (o.json) {
    nlohmann::json out = {{"ids", ids}, {"pieces", nlohmann::json::array()}};
    for (const TokenId id : ids) out["pieces"].push_back(std::string(tokenizer->Piece(id)));
    // llama2.c's pieces may be any bytes: those that are not UTF-8 are written as U+FFFD.
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  for (const TokenId id : ids) std::printf("%d\t%s\n", id, EscapePiece(tokenizer->Piece(id)).c_str());
  return 0;
}

}  // namespace anyprec::cli
