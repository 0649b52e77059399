// Splitting of normalized text into the words that BPE encodes one by one.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace anyprec {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // `at_text_start` is true when `segment` starts the original text (Metaspace's "first" scheme).
  virtual void Split(std::string_view segment, bool at_text_start, std::vector<std::string>& words) const = 0;
};

// Metaspace: spaces become "▁", and "▁" is prepended (always, or to the first segment only).
std::unique_ptr<PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement, bool prepend_always,
                                                        bool prepend_first, bool split);

// How a Split step keeps the text its pattern matches (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior {
  kIsolated,            // a piece of its own
  kMergedWithPrevious,  // appended to the piece before it
};

struct SplitStep {
  std::string regex;  // PCRE2 syntax; LiteralRegex for a plain string
  SplitBehavior behavior = SplitBehavior::kIsolated;
};

// A regex that matches exactly `text`.
std::string LiteralRegex(std::string_view text);

// Splits by each step in turn (Digits and Split pre-tokenizers; the text between matches
// becomes pieces too).
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplitPreTokenizer(std::vector<SplitStep> steps);

// Byte-level (GPT-2 family): as MakeSplitPreTokenizer, then by the GPT-2 regex when
// `use_gpt2_regex`, then each byte is written as its printable stand-in.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeByteLevelPreTokenizer(std::vector<SplitStep> steps,
                                                                        bool use_gpt2_regex, bool add_prefix_space);

// The byte-level alphabet: byte b is written as the code point ByteLevelChar(b).
char32_t ByteLevelChar(uint8_t b);
// The inverse of ByteLevelChar, for code points in the alphabet.
std::optional<uint8_t> ByteLevelByte(char32_t cp);

}  // namespace anyprec
