#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/tokenizer/tokenizer_impl.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace anyprec {

std::string ApplyRewrites(std::string_view text, const std::vector<TextRewrite>& steps) {
  std::string out(text);
  for (const TextRewrite& step : steps) {
    if (step.kind == TextRewrite::Kind::kReplace && step.from.empty()) continue;  // loaders reject these
    if (step.kind == TextRewrite::Kind::kPrepend) {
      if (!out.empty()) out.insert(0, step.to);
      continue;
    }
    if (step.kind == TextRewrite::Kind::kNfc) {
      out = utf8::Nfc(out);
      continue;
    }
    std::string replaced;
    replaced.reserve(out.size());
    size_t start = 0;
    for (size_t hit = out.find(step.from); hit != std::string::npos; hit = out.find(step.from, start)) {
      replaced.append(out, start, hit - start);
      replaced += step.to;
      start = hit + step.from.size();
    }
    replaced.append(out, start);
    out = std::move(replaced);
  }
  return out;
}

std::optional<uint8_t> ParseBytePiece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else {
      return std::nullopt;
    }
  }
  return static_cast<uint8_t>(value);
}

void TokenizerParts::IndexVocabulary() {
  TokenId max_id = -1;
  for (const auto& [piece, id] : model->vocab()) max_id = std::max(max_id, id);
  for (const AddedToken& t : added_tokens) max_id = std::max(max_id, t.id);
  pieces.assign(max_id + 1, "");
  special.assign(max_id + 1, false);
  for (const auto& [piece, id] : model->vocab()) pieces[id] = piece;
  for (const AddedToken& t : added_tokens) {
    pieces[t.id] = t.content;
    special[t.id] = t.special;
  }
}

Tokenizer::Tokenizer(std::unique_ptr<const TokenizerParts> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& path) {
  auto contents = ReadTextFile(path);
  if (!contents.ok()) return contents.status();
  // A llama2.c header may begin with '{' (max_token_length 123), so content alone does not decide.
  const size_t first = contents->find_first_not_of(" \t\r\n");
  const bool json = path.ends_with(".json") ||
                    (first != std::string::npos && (*contents)[first] == '{' && nlohmann::json::accept(*contents));
  auto impl = json ? LoadHuggingFaceTokenizer(path, *contents) : LoadLlama2cTokenizer(path, *contents);
  if (!impl.ok()) return impl.status();
  const std::string config = (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  if (std::error_code ec; std::filesystem::exists(config, ec)) {
    if (absl::Status s = ApplyTokenizerConfig(config, **impl); !s.ok()) return s;
  }
  return Tokenizer(std::move(*impl));
}

absl::StatusOr<std::string> Tokenizer::FindInFolder(const std::string& model_dir) {
  for (const char* name : {"tokenizer.json", "tokenizer.bin"}) {
    if (const auto candidate = std::filesystem::path(model_dir) / name; std::filesystem::exists(candidate)) return candidate.string();
  }
  return absl::NotFoundError(absl::StrCat(model_dir, ": no tokenizer.json or tokenizer.bin; pass --tokenizer FILE"));
}

std::vector<TokenId> Tokenizer::Encode(std::string_view raw_text) const {
  const TokenizerParts& impl = *impl_;
  std::string sanitized;
  if (!utf8::IsValid(raw_text)) {
    sanitized = utf8::Sanitize(raw_text);
    raw_text = sanitized;
  }
  std::vector<TokenId> ids;
  std::vector<std::string> words;
  for (const TextSegment& raw : impl.raw_added_tokens.Split(raw_text)) {
    if (raw.token >= 0) {
      ids.push_back(raw.token);
      continue;
    }
    const std::string normalized = ApplyRewrites(raw.text, impl.normalizer);
    for (const TextSegment& seg : impl.normalized_added_tokens.Split(normalized)) {
      if (seg.token >= 0) {
        ids.push_back(seg.token);
        continue;
      }
      if (impl.pre_tokenizer == nullptr) {
        impl.model->EncodeWord(seg.text, ids);
        continue;
      }
      words.clear();
      impl.pre_tokenizer->Split(seg.text, raw.offset == 0 && seg.offset == 0, words);
      for (const std::string& word : words) impl.model->EncodeWord(word, ids);
    }
  }
  return ids;
}

std::vector<TokenId> Tokenizer::EncodeWithSpecialTokens(std::string_view text) const {
  std::vector<TokenId> ids = impl_->template_prefix;
  const std::vector<TokenId> body = Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), impl_->template_suffix.begin(), impl_->template_suffix.end());
  return ids;
}

std::string Tokenizer::Decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::string bytes;
  // As Hugging Face's ByteFallback: a run of byte tokens that is not valid UTF-8 becomes one
  // U+FFFD per byte.
  std::string run;
  const auto flush_run = [&] {
    if (utf8::IsValid(run)) {
      bytes += run;
    } else {
      for (size_t i = 0; i < run.size(); ++i) bytes += "\xEF\xBF\xBD";
    }
    run.clear();
  };
  for (TokenId id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special_tokens && impl_->special[id]) continue;
    if (impl_->byte_token[id]) {
      run += impl_->decoded_bytes[id];
      continue;
    }
    flush_run();
    bytes += impl_->decoded_bytes[id];
  }
  flush_run();
  for (int i = 0; i < impl_->strip_leading_spaces && !bytes.empty() && bytes[0] == ' '; ++i) bytes.erase(0, 1);
  return utf8::Sanitize(bytes);
}

std::optional<bool> Tokenizer::adds_bos() const { return impl_->adds_bos; }

std::span<const TokenId> Tokenizer::eos_ids() const { return impl_->eos_ids; }

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->pieces.size()); }

std::string_view Tokenizer::Piece(TokenId id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->pieces[id];
}

std::string_view Tokenizer::TokenBytes(TokenId id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->decoded_bytes[id];
}

std::string DecodeStream::Next(TokenId id) {
  const TokenizerParts& impl = *tokenizer_.impl_;
  if (id < 0 || id >= tokenizer_.vocab_size() || impl.special[id]) return {};
  std::string_view bytes = impl.decoded_bytes[id];
  if (at_start_) {
    while (spaces_stripped_ < impl.strip_leading_spaces && bytes.starts_with(' ')) {
      bytes.remove_prefix(1);
      ++spaces_stripped_;
    }
    at_start_ = bytes.empty();
  }
  pending_ += bytes;
  std::string out;
  utf8::DrainComplete(pending_, out);
  return out;
}

std::string DecodeStream::Finish() {
  std::string out = utf8::Sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace anyprec
