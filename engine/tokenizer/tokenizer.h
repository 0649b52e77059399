// Text <-> token ids for the model families anyprec serves: Hugging Face tokenizer.json
// (SentencePiece-style BPE with byte fallback, and GPT-2-style byte-level BPE) and
// llama2.c's tokenizer.bin.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/token_id.h"

namespace anyprec {

struct TokenizerParts;  // internal: what a loaded tokenizer is assembled from

class Tokenizer {
 public:
  // Loads a tokenizer.json, or a llama2.c tokenizer.bin (told apart by content), with the
  // tokenizer_config.json beside it if there is one.
  static absl::StatusOr<Tokenizer> Load(const std::string& path);
  // The tokenizer file of a model folder: its tokenizer.json, else its tokenizer.bin.
  static absl::StatusOr<std::string> FindInFolder(const std::string& model_dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Ids of `text` without special tokens around it (add_special_tokens=false).
  // Ill-formed UTF-8 in `text` is read as U+FFFD.
  std::vector<TokenId> Encode(std::string_view text) const;
  // As Encode, with the special tokens the tokenizer's post-processor adds (e.g. BOS).
  std::vector<TokenId> EncodeWithSpecialTokens(std::string_view text) const;

  std::string Decode(std::span<const TokenId> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;
  // tokenizer_config.json's add_bos_token, where it says (the template then follows it).
  std::optional<bool> adds_bos() const;
  // The tokens tokenizer_config.json's eos_token names, which end a generation.
  std::span<const TokenId> eos_ids() const;
  // The piece `id` stands for as the vocabulary writes it (e.g. "▁upon", "Ġworld", "<0x0A>"),
  // or "" when out of range.
  std::string_view Piece(TokenId id) const;
  // The bytes `id` adds to a text it does not open (e.g. " upon", " world", "\n"); a byte token
  // gives its one byte, which may be part of a UTF-8 character. "" when out of range.
  std::string_view TokenBytes(TokenId id) const;

 private:
  friend class DecodeStream;
  explicit Tokenizer(std::unique_ptr<const TokenizerParts> impl);

  std::unique_ptr<const TokenizerParts> impl_;
};

// Turns ids into text one at a time without ever emitting half a UTF-8 character;
// special tokens are skipped. Concatenated output equals Decode(all ids, true) except where
// a run of byte tokens is ill-formed: characters complete before the bad byte have already
// been emitted, where Decode replaces the whole run.
class DecodeStream {
 public:
  explicit DecodeStream(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // Text that became complete with `id` (possibly empty).
  std::string Next(TokenId id);
  // Whatever is still pending, with an unfinished sequence written as U+FFFD.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
  bool at_start_ = true;  // nothing but stripped spaces seen yet
  int spaces_stripped_ = 0;
};

}  // namespace anyprec
