#include "loadtest/workload.h"

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/base/mapped_file.h"

namespace anyprec::loadtest {

std::string Width::Name() const { return adaptive() ? absl::StrCat(min_bits, "-", max_bits) : absl::StrCat(bits); }

absl::StatusOr<std::vector<Weighted<Width>>> ParseWidthMix(const std::string& text) {
  std::vector<Weighted<Width>> mix;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    const std::vector<absl::string_view> widths = absl::StrSplit(parts[0], '-');
    Weighted<Width> entry{Width{}, 1.0};
    Width& w = entry.value;
    bool good = parts.size() <= 2 && widths.size() <= 2;
    if (good && widths.size() == 1) {
      good = absl::SimpleAtoi(widths[0], &w.bits) && w.bits >= 0 && w.bits <= 8;
    } else if (good) {
      good = absl::SimpleAtoi(widths[0], &w.min_bits) && absl::SimpleAtoi(widths[1], &w.max_bits) && w.min_bits >= 1 &&
             w.min_bits <= w.max_bits && w.max_bits <= 8;
    }
    if (!good || (parts.size() == 2 && (!absl::SimpleAtod(parts[1], &entry.weight) || !(entry.weight > 0)))) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad mix entry '", item, "': want BITS:WEIGHT (bits 0..8) or MIN-MAX:WEIGHT (adaptive, 1..8), weight > 0"));
    }
    mix.push_back(entry);
  }
  if (mix.empty()) return absl::InvalidArgumentError("the mix is empty");
  return mix;
}

absl::StatusOr<std::vector<std::string>> ReadPrompts(const std::string& path, PromptSplit split) {
  auto text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  std::vector<std::string> prompts;
  const std::string separator = split == PromptSplit::kParagraphs ? "\n\n" : "\n";
  for (absl::string_view piece : absl::StrSplit(*text, separator)) {
    piece = absl::StripAsciiWhitespace(piece);
    if (!piece.empty()) prompts.emplace_back(piece);
  }
  if (prompts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": holds no prompts"));
  return prompts;
}

absl::StatusOr<Range> ParseRange(const std::string& text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  Range range;
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &range.min) ||
      !absl::SimpleAtoi(parts.size() == 2 ? parts[1] : parts[0], &range.max) || range.min < 0 || range.max < range.min) {
    return absl::InvalidArgumentError(absl::StrCat("bad range '", text, "': want N or MIN-MAX with 0 <= MIN <= MAX"));
  }
  return range;
}

Workload::Workload(WorkloadOptions options) : options_(std::move(options)), rng_(options_.seed) {}

template <typename T>
T Workload::Pick(const std::vector<Weighted<T>>& mix) {
  double total = 0;
  for (const Weighted<T>& w : mix) total += w.weight;
  double x = std::uniform_real_distribution<double>(0, total)(rng_);
  for (const Weighted<T>& w : mix) {
    if (x < w.weight) return w.value;
    x -= w.weight;
  }
  return mix.back().value;
}

PlannedRequest Workload::Next() {
  PlannedRequest r;
  r.index = next_index_++;
  if (options_.rate > 0) {
    // Gamma(shape k, scale 1/(k rate)) keeps the mean gap 1/rate; k = 1 is exponential (Poisson).
    const double k = options_.burstiness;
    clock_ += std::gamma_distribution<double>(k, 1.0 / (k * options_.rate))(rng_);
    r.send_at = clock_;
  }
  const auto uniform = [&](Range range) { return std::uniform_int_distribution<int>(range.min, range.max)(rng_); };
  const std::string& whole = options_.prompts[rng_() % options_.prompts.size()];
  if (options_.prompt_words.max == 0) {
    r.prompt = whole;
  } else {
    std::istringstream words(whole);
    std::string word;
    for (int n = uniform(options_.prompt_words); n > 0 && words >> word; --n) absl::StrAppend(&r.prompt, r.prompt.empty() ? "" : " ", word);
    if (r.prompt.empty()) r.prompt = whole;
  }
  // Drawn only when asked for, so that other workloads keep their streams.
  if (!options_.prefixes.empty()) r.prompt = absl::StrCat(options_.prefixes[rng_() % options_.prefixes.size()], "\n\n", r.prompt);
  r.max_new_tokens = std::max(1, uniform(options_.output_tokens));
  r.width = Pick(options_.width_mix);
  r.tenant = Pick(options_.tenant_mix);
  const double fault = std::uniform_real_distribution<double>(0, 1)(rng_);
  if (fault < options_.cancel_fraction) {
    r.fault = Fault::kCancelAfterFirstToken;
  } else if (fault < options_.cancel_fraction + options_.deadline_fraction) {
    r.fault = Fault::kShortDeadline;
  }
  // Drawn only when asked for, so that other workloads keep their streams.
  if (options_.speculative_fraction > 0 && r.width.highest() > options_.draft_bits) {
    r.speculative = std::uniform_real_distribution<double>(0, 1)(rng_) < options_.speculative_fraction;
  }
  return r;
}

}  // namespace anyprec::loadtest
