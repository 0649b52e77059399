#include "engine/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace anyprec {
namespace {

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, bool prepend_always, bool prepend_first, bool split)
      : replacement_(std::move(replacement)),
        prepend_always_(prepend_always),
        prepend_first_(prepend_first),
        split_(split) {}

  void Split(std::string_view segment, bool at_text_start, std::vector<std::string>& words) const override {
    std::string text;
    text.reserve(segment.size() + replacement_.size());
    for (char c : segment) {
      if (c == ' ') {
        text += replacement_;
      } else {
        text += c;
      }
    }
    const bool prepend = prepend_always_ || (prepend_first_ && at_text_start);
    if (prepend && !text.starts_with(replacement_)) text.insert(0, replacement_);
    if (!split_) {
      words.push_back(std::move(text));
      return;
    }
    // Each "▁" starts a new word (MergedWithNext).
    size_t start = 0;
    for (size_t pos = text.find(replacement_, 1); pos != std::string::npos; pos = text.find(replacement_, pos + 1)) {
      words.push_back(text.substr(start, pos - start));
      start = pos;
    }
    if (start < text.size()) words.push_back(text.substr(start));
  }

 private:
  std::string replacement_;
  bool prepend_always_;
  bool prepend_first_;
  bool split_;
};

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using Regex = std::unique_ptr<pcre2_code, CodeDeleter>;

absl::StatusOr<Regex> CompileRegex(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("cannot compile pre-tokenizer regex: ", reinterpret_cast<char*>(message)));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  return Regex(code);
}

// Splits `text` into the regex's matches and the gaps between them, as Hugging Face's
// Split does: the runs of text with whether they matched (empty matches included), a match
// appended to the gap before it under kMergedWithPrevious, then empty pieces dropped.
// Input must be valid UTF-8; the tokenizer sanitizes it first.
void SplitByRegex(const pcre2_code* regex, SplitBehavior behavior, std::string_view text,
                  std::vector<std::string_view>& pieces) {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> match(pcre2_match_data_create_from_pattern(regex, nullptr));
  struct Run {
    size_t begin;
    size_t end;
  };
  std::vector<Run> runs;
  bool previous_match = false;
  const auto add = [&](size_t begin, size_t end, bool is_match) {
    if (behavior == SplitBehavior::kMergedWithPrevious && is_match && !previous_match && !runs.empty()) {
      runs.back().end = end;
    } else {
      runs.push_back({begin, end});
    }
    previous_match = is_match;
  };
  size_t start = 0;
  size_t last_end = 0;
  while (start < text.size()) {
    const int rc = pcre2_match(regex, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                               PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (begin > last_end) add(last_end, begin, /*is_match=*/false);
    add(begin, end, /*is_match=*/true);
    last_end = end;
    if (end == begin) {
      const size_t n = utf8::SequenceLength(text.substr(end));
      start = end + (n == 0 ? 1 : n);
    } else {
      start = end;
    }
  }
  if (last_end < text.size()) add(last_end, text.size(), /*is_match=*/false);
  for (const Run& run : runs) {
    if (run.end > run.begin) pieces.push_back(text.substr(run.begin, run.end - run.begin));
  }
}

const std::array<std::string, 256>& ByteLevelAlphabet() {
  static const std::array<std::string, 256> alphabet = [] {
    std::array<std::string, 256> a;
    for (int b = 0; b < 256; ++b) utf8::AppendCodePoint(ByteLevelChar(static_cast<uint8_t>(b)), a[b]);
    return a;
  }();
  return alphabet;
}

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct CompiledStep {
  Regex regex;
  SplitBehavior behavior;
};

// Split steps in turn, then, for byte-level tokenizers, the bytes' printable stand-ins.
class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::vector<CompiledStep> steps, bool byte_level, bool add_prefix_space)
      : steps_(std::move(steps)), byte_level_(byte_level), add_prefix_space_(add_prefix_space) {}

  void Split(std::string_view segment, bool at_text_start, std::vector<std::string>& words) const override {
    std::string prefixed;
    if (add_prefix_space_ && !segment.starts_with(' ')) {
      prefixed = " ";
      prefixed += segment;
      segment = prefixed;
    }
    std::vector<std::string_view> pieces = {segment};
    std::vector<std::string_view> finer;
    for (const CompiledStep& step : steps_) {
      finer.clear();
      for (std::string_view piece : pieces) SplitByRegex(step.regex.get(), step.behavior, piece, finer);
      pieces.swap(finer);
    }
    if (!byte_level_) {
      words.insert(words.end(), pieces.begin(), pieces.end());
      return;
    }
    const auto& alphabet = ByteLevelAlphabet();
    for (std::string_view piece : pieces) {
      std::string& word = words.emplace_back();
      word.reserve(piece.size() * 2);
      for (char c : piece) word += alphabet[static_cast<uint8_t>(c)];
    }
  }

 private:
  std::vector<CompiledStep> steps_;
  bool byte_level_;
  bool add_prefix_space_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> CompileSplitPreTokenizer(std::vector<SplitStep> steps, bool byte_level,
                                                                       bool add_prefix_space) {
  std::vector<CompiledStep> compiled;
  for (const SplitStep& step : steps) {
    auto regex = CompileRegex(step.regex);
    if (!regex.ok()) return regex.status();
    compiled.push_back({std::move(*regex), step.behavior});
  }
  return std::make_unique<SplitPreTokenizer>(std::move(compiled), byte_level, add_prefix_space);
}

}  // namespace

char32_t ByteLevelChar(uint8_t b) {
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
  // bytes take the code points from U+0100 on, in byte order.
  const auto printable = [](int x) { return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255); };
  if (printable(b)) return b;
  int rank = 0;
  for (int x = 0; x < b; ++x) rank += printable(x) ? 0 : 1;
  return 256 + rank;
}

std::unique_ptr<PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement, bool prepend_always,
                                                        bool prepend_first, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), prepend_always, prepend_first, split);
}

std::optional<uint8_t> ByteLevelByte(char32_t cp) {
  static const std::array<int, 512> inverse = [] {
    std::array<int, 512> table;
    table.fill(-1);
    for (int b = 0; b < 256; ++b) table[ByteLevelChar(static_cast<uint8_t>(b))] = b;
    return table;
  }();
  if (cp >= inverse.size() || inverse[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(inverse[cp]);
}

std::string LiteralRegex(std::string_view text) {
  std::string regex;
  for (char c : text) {
    // A backslash before any ASCII character that is not a letter or digit makes it literal.
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) regex += '\\';
    regex += c;
  }
  return regex;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplitPreTokenizer(std::vector<SplitStep> steps) {
  return CompileSplitPreTokenizer(std::move(steps), /*byte_level=*/false, /*add_prefix_space=*/false);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeByteLevelPreTokenizer(std::vector<SplitStep> steps,
                                                                        bool use_gpt2_regex, bool add_prefix_space) {
  if (use_gpt2_regex) steps.push_back({std::string(kGpt2Pattern), SplitBehavior::kIsolated});
  return CompileSplitPreTokenizer(std::move(steps), /*byte_level=*/true, add_prefix_space);
}

}  // namespace anyprec
