// The Decoder, the one decoding path of `anyprec generate` and the server: fed logits that
// make each choice certain, over the real TinyStories-656K tokenizer.
#include "engine/runtime/decoder.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

constexpr char kStory[] = "Once upon a time there was a big dog named Max";

class DecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Tokenizer> loaded = Tokenizer::Load(testing::SharedPath("models/TinyStories-656K/tokenizer.json"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_.emplace(*std::move(loaded));
    config_.vocab_size = 2048;
    config_.max_position_embeddings = 512;
    config_.eos_token_ids = {2};
    story_ = tokenizer_->Encode(kStory);
    prompt_.assign(story_.begin(), story_.begin() + 4);
    continuation_ = tokenizer_->Decode(story_, true).substr(tokenizer_->Decode(prompt_, true).size());
  }

  // Logits under which `token` is the greedy choice by far.
  std::vector<float> Certain(TokenId token) const {
    std::vector<float> logits(config_.vocab_size, 0.0f);
    logits[token] = 100.0f;
    return logits;
  }

  DecodingOptions Greedy(int max_new_tokens) const {
    DecodingOptions options;
    options.sampling.temperature = 0;
    options.max_new_tokens = max_new_tokens;
    return options;
  }

  // Feeds the story's tokens after the prompt one by one: the text they made, and how the
  // decoder ended, if it did.
  std::pair<std::string, std::optional<DecodeEnd>> Run(Decoder& decoder) const {
    std::string out;
    for (size_t i = prompt_.size(); i < story_.size(); ++i) {
      const DecodeStep step = decoder.Next(Certain(story_[i]));
      out += step.text;
      if (step.end) return {out, step.end};
    }
    return {out, std::nullopt};
  }

  ModelConfig config_;
  std::optional<Tokenizer> tokenizer_;
  std::vector<TokenId> story_;
  std::vector<TokenId> prompt_;  // the story's first tokens
  std::string continuation_;     // the story's text after the prompt's
};

TEST_F(DecoderTest, TextFollowsThePromptAndTheLengthEndsIt) {
  Decoder decoder(config_, *tokenizer_, Greedy(3), prompt_);
  EXPECT_EQ(decoder.prompt_text(), tokenizer_->Decode(prompt_, true));
  const auto [text, end] = Run(decoder);
  EXPECT_EQ(end, DecodeEnd::kLength);
  EXPECT_EQ(decoder.generated(), 3);
  EXPECT_EQ(decoder.context(), std::vector<TokenId>(story_.begin(), story_.begin() + prompt_.size() + 3));
  EXPECT_EQ(decoder.prompt_text() + text + decoder.Finish(), tokenizer_->Decode(decoder.context(), true));
}

TEST_F(DecoderTest, ThePositionLimitEndsItToo) {
  config_.max_position_embeddings = static_cast<int>(prompt_.size()) + 2;
  Decoder decoder(config_, *tokenizer_, Greedy(100), prompt_);
  EXPECT_EQ(Run(decoder).second, DecodeEnd::kLength);
  EXPECT_EQ(decoder.generated(), 2);
}

TEST_F(DecoderTest, EosEndsWithoutAToken) {
  Decoder decoder(config_, *tokenizer_, Greedy(10), prompt_);
  const DecodeStep step = decoder.Next(Certain(2));
  EXPECT_FALSE(step.token.has_value());
  EXPECT_EQ(step.end, DecodeEnd::kEos);
  EXPECT_EQ(decoder.generated(), 0);

  DecodingOptions past_eos = Greedy(10);
  past_eos.ignore_eos = true;
  Decoder ignoring(config_, *tokenizer_, past_eos, prompt_);
  const DecodeStep kept = ignoring.Next(Certain(2));
  EXPECT_EQ(kept.token, 2);
  EXPECT_FALSE(kept.end.has_value());
}

// A stop sequence ends the output where it begins, also when it spans tokens; the earliest of
// several wins.
TEST_F(DecoderTest, StopSequencesCutTheTextWhereTheyBegin) {
  DecodingOptions options = Greedy(50);
  options.stop = {"big dog", "was a"};
  Decoder decoder(config_, *tokenizer_, options, prompt_);
  const auto [text, end] = Run(decoder);
  EXPECT_EQ(end, DecodeEnd::kStopSequence);
  ASSERT_NE(continuation_.find("was a"), std::string::npos) << continuation_;
  EXPECT_EQ(text, continuation_.substr(0, continuation_.find("was a")));

  options.stop = {"g named"};
  Decoder spanning(config_, *tokenizer_, options, prompt_);
  const auto [cut, spanning_end] = Run(spanning);
  EXPECT_EQ(spanning_end, DecodeEnd::kStopSequence);
  EXPECT_EQ(cut, continuation_.substr(0, continuation_.find("g named")));
}

// Text that could begin a stop sequence is held back: released once the output goes another
// way, and by Finish when EOS or the length ends the sequence first.
TEST_F(DecoderTest, TextThatCouldBeginAStopSequenceIsHeldBack) {
  DecodingOptions options = Greedy(50);
  options.stop = {"was a big cat"};
  Decoder decoder(config_, *tokenizer_, options, prompt_);
  std::string released;
  for (size_t i = prompt_.size(); i < story_.size(); ++i) {
    const DecodeStep step = decoder.Next(Certain(story_[i]));
    ASSERT_FALSE(step.end.has_value());
    released += step.text;
    const std::string seen = tokenizer_->Decode(std::span<const TokenId>(story_).first(i + 1), true);
    if (seen.find("was") != std::string::npos && seen.find("dog") == std::string::npos) {
      EXPECT_EQ(released.find("was"), std::string::npos) << "released '" << released << "' while it could begin the stop sequence";
    }
  }
  EXPECT_EQ(released + decoder.Finish(), continuation_);

  options.stop = {"big dog named Maxwell"};
  Decoder ending(config_, *tokenizer_, options, prompt_);
  const auto [held, end] = Run(ending);
  EXPECT_FALSE(end.has_value());
  EXPECT_EQ(held, continuation_.substr(0, continuation_.find("big dog")));
  const DecodeStep eos = ending.Next(Certain(2));
  EXPECT_EQ(eos.end, DecodeEnd::kEos);
  EXPECT_EQ(held + eos.text + ending.Finish(), continuation_);
  EXPECT_EQ(ending.Finish(), "") << "Finish gives the rest once";
}

// The repetition penalty reads the whole context, prompt included: a token of the prompt
// loses to one a little less likely.
TEST_F(DecoderTest, RepetitionPenaltyReadsThePrompt) {
  DecodingOptions options = Greedy(5);
  options.repetition_penalty = 2.0f;
  Decoder decoder(config_, *tokenizer_, options, prompt_);
  std::vector<float> logits(config_.vocab_size, 0.0f);
  const TokenId repeated = prompt_.back();
  TokenId fresh = 3;
  while (std::find(prompt_.begin(), prompt_.end(), fresh) != prompt_.end()) ++fresh;
  logits[repeated] = 10.0f;
  logits[fresh] = 6.0f;
  EXPECT_EQ(decoder.Next(logits).token, fresh);
}

}  // namespace
}  // namespace anyprec
