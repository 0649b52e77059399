// The parts a Tokenizer is assembled from, shared by its loaders and its pipeline.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

// One step of a normalizer or of a Replace decoder.
struct TextRewrite {
  enum class Kind { kPrepend, kReplace, kNfc } kind;
  std::string from;  // kReplace only
  std::string to;    // kPrepend and kReplace
};

struct TokenizerParts {
  std::unique_ptr<BpeModel> model;
  std::vector<TextRewrite> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // null: each segment is one word
  std::vector<AddedToken> added_tokens;
  AddedTokenMatcher raw_added_tokens;         // those matched in the raw input
  AddedTokenMatcher normalized_added_tokens;  // those matched in normalized text
  std::vector<TokenId> template_prefix;  // post-processor ids around the sequence (as tokenizer_config.json's
                                         // add_bos_token and add_eos_token amend them)
  std::vector<TokenId> template_suffix;

  std::vector<std::string> pieces;         // id -> piece as the vocabulary writes it
  std::vector<std::string> decoded_bytes;  // id -> bytes the decoder makes of it
  std::vector<bool> special;
  std::vector<bool> byte_token;            // id decodes to one raw byte (<0xNN> with ByteFallback)
  int strip_leading_spaces = 0;            // decoder's Strip(" ", n, 0)
  std::optional<bool> adds_bos;            // tokenizer_config.json's add_bos_token, where it says
  std::vector<TokenId> eos_ids;            // tokenizer_config.json's eos_token(s)

  // Fills pieces/special from the model vocabulary and added tokens.
  void IndexVocabulary();
};

absl::StatusOr<std::unique_ptr<TokenizerParts>> LoadHuggingFaceTokenizer(const std::string& path,
                                                                                 const std::string& json_text);
// Applies the tokenizer_config.json at `path` (Hugging Face's, beside tokenizer.json), if there
// is one: add_bos_token and add_eos_token rebuild the template as Hugging Face's Llama and
// Gemma tokenizers do, eos_token (a string, an AddedToken object or a list of them) names the
// tokens that end a generation.
absl::Status ApplyTokenizerConfig(const std::string& path, TokenizerParts& parts);

absl::StatusOr<std::unique_ptr<TokenizerParts>> LoadLlama2cTokenizer(const std::string& path,
                                                                            const std::string& bytes);

// Applies the rewrites in order (a normalizer, or a decoder's Replace steps).
std::string ApplyRewrites(std::string_view text, const std::vector<TextRewrite>& steps);

// Byte 0xNN for a "<0xNN>" piece.
std::optional<uint8_t> ParseBytePiece(std::string_view piece);

}  // namespace anyprec
