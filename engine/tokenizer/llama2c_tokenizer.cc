// Reads llama2.c's tokenizer.bin: int32 max_token_length, then per token a float32 score,
// an int32 byte length and the bytes. Encoding follows llama2.c's run.c: a " " is put in
// front, characters missing from the vocabulary fall back to <0xNN> (id byte + 3), and the
// adjacent pair whose concatenation scores highest is merged first, leftmost on ties.
// That is BPE whose merges are every split of a vocabulary piece, ranked by its score.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer_impl.h"

namespace anyprec {
namespace {

constexpr int kBos = 1;
constexpr int kEos = 2;
// Real files use pieces of a few dozen bytes; the bound keeps deriving merges (quadratic in
// a piece's length) cheap for hostile files.
constexpr int32_t kMaxPieceBytes = 512;

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerParts>> LoadLlama2cTokenizer(const std::string& path,
                                                                            const std::string& bytes) {
  const auto error = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed llama2.c tokenizer: ", what));
  };
  size_t pos = 0;
  const auto read = [&](void* out, size_t n) {
    if (bytes.size() - pos < n) return false;
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
    return true;
  };
  int32_t max_token_length = 0;
  if (!read(&max_token_length, 4) || max_token_length <= 0 || max_token_length > kMaxPieceBytes) {
    return error("bad max_token_length header");
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (pos < bytes.size()) {
    float score = 0;
    int32_t length = 0;
    if (!read(&score, 4) || !read(&length, 4)) return error(absl::StrCat("token ", pieces.size(), " is truncated"));
    if (length < 0 || length > max_token_length || bytes.size() - pos < static_cast<size_t>(length)) {
      return error(absl::StrCat("token ", pieces.size(), " has length ", length, " (max_token_length ",
                                max_token_length, ", ", bytes.size() - pos, " bytes left)"));
    }
    if (!std::isfinite(score)) return error(absl::StrCat("token ", pieces.size(), " has a non-finite score"));
    pieces.emplace_back(bytes.data() + pos, length);
    scores.push_back(score);
    pos += length;
  }
  if (pieces.size() < 3 + 256) return error(absl::StrCat("only ", pieces.size(), " tokens; expected <unk>, BOS, EOS and 256 byte tokens"));

  TokenMap vocab;
  for (size_t id = 0; id < pieces.size(); ++id) vocab.emplace(pieces[id], static_cast<TokenId>(id));

  // Rank 0 for the highest score; equal scores share a rank so that position decides.
  std::vector<float> distinct = scores;
  std::sort(distinct.begin(), distinct.end(), std::greater<>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::unordered_map<uint64_t, BpeModel::Merge> merges;
  for (size_t id = 0; id < pieces.size(); ++id) {
    const std::string& piece = pieces[id];
    if (vocab.find(piece)->second != static_cast<TokenId>(id)) continue;  // a duplicate piece: the first id wins
    const auto rank = static_cast<uint32_t>(std::lower_bound(distinct.begin(), distinct.end(), scores[id], std::greater<>()) - distinct.begin());
    for (size_t split = 1; split < piece.size(); ++split) {
      const auto left = vocab.find(std::string_view(piece).substr(0, split));
      const auto right = vocab.find(std::string_view(piece).substr(split));
      if (left == vocab.end() || right == vocab.end()) continue;
      merges.emplace(BpeModel::PairKey(left->second, right->second), BpeModel::Merge{rank, static_cast<TokenId>(id)});
    }
  }

  auto impl = std::make_unique<TokenizerParts>();
  impl->model = std::make_unique<BpeModel>(std::move(vocab), std::move(merges), /*byte_fallback=*/true,
                                           /*unk=*/TokenId{0}, /*fuse_unk=*/false);
  impl->normalizer.push_back({TextRewrite::Kind::kPrepend, "", " "});
  impl->template_prefix = {kBos};
  impl->IndexVocabulary();
  // Special for decoding only: run.c never matches them in the input text.
  for (TokenId id : {0, kBos, kEos}) impl->special[id] = true;
  impl->strip_leading_spaces = 1;
  for (size_t id = 0; id < impl->pieces.size(); ++id) {
    const auto byte = ParseBytePiece(impl->pieces[id]);
    impl->decoded_bytes.push_back(byte ? std::string(1, static_cast<char>(*byte)) : impl->pieces[id]);
    impl->byte_token.push_back(byte.has_value());
  }
  return impl;
}

}  // namespace anyprec
