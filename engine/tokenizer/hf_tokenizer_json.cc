// Reads a Hugging Face tokenizer.json into the tokenizer's parts. Only the components that
// the supported model families use are accepted; anything else is a clear error rather than
// a tokenizer that silently encodes differently.
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/tokenizer/tokenizer_impl.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

using nlohmann::json;

constexpr int64_t kMaxVocabulary = 1 << 24;
constexpr int kMaxNesting = 8;

class JsonTokenizerReader {
 public:
  explicit JsonTokenizerReader(const std::string& path) : path_(path) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
  }
  absl::Status Unsupported(const std::string& what) const {
    return absl::UnimplementedError(absl::StrCat(path_, ": unsupported ", what));
  }

  absl::Status OneCharacter(const std::string& s, const char* what) const {
    if (s.empty() || utf8::SequenceLength(s) != s.size()) return Error(absl::StrCat(what, " must be one character"));
    return absl::OkStatus();
  }

  static std::string TypeOf(const json& j) {
    const auto it = j.find("type");
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  }

  static std::string StringOr(const json& j, const char* key, std::string fallback) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
  }
  static bool BoolOr(const json& j, const char* key, bool fallback) {
    const auto it = j.find(key);
    return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
  }

  absl::StatusOr<std::unique_ptr<BpeModel>> Model(const json& model) const {
    if (!model.is_object()) return Error("missing 'model' object");
    const std::string type = TypeOf(model);
    if (!type.empty() && type != "BPE") return Unsupported(absl::StrCat("model type '", type, "' (only BPE)"));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (!StringOr(model, key, "").empty()) return Unsupported(absl::StrCat("BPE option '", key, "'"));
    }
    if (const auto d = model.find("dropout"); d != model.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0)) {
      return Unsupported("BPE dropout");
    }
    const auto vocab_it = model.find("vocab");
    if (vocab_it == model.end() || !vocab_it->is_object()) return Error("model has no 'vocab' object");
    TokenMap vocab;
    for (const auto& [piece, id] : vocab_it->items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocabulary) {
        return Error(absl::StrCat("vocab id of '", piece, "' is not an integer in [0, ", kMaxVocabulary, ")"));
      }
      if (!utf8::IsValid(piece)) return Error("vocab piece is not valid UTF-8");
      vocab.emplace(piece, static_cast<TokenId>(id.get<int64_t>()));
    }
    const auto merges_it = model.find("merges");
    if (merges_it == model.end() || !merges_it->is_array()) return Error("model has no 'merges' list");
    std::unordered_map<uint64_t, BpeModel::Merge> merges;
    uint32_t rank = 0;
    for (const json& m : *merges_it) {
      std::string left;
      std::string right;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ', 1);
        if (space == std::string::npos) return Error(absl::StrCat("merge '", s, "' is not 'left right'"));
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        return Error("a merge is neither 'left right' nor [left, right]");
      }
      const auto l = vocab.find(left);
      const auto r = vocab.find(right);
      const auto result = vocab.find(left + right);
      if (l == vocab.end() || r == vocab.end() || result == vocab.end()) {
        return Error(absl::StrCat("merge '", left, " ", right, "' uses pieces missing from the vocabulary"));
      }
      merges.emplace(BpeModel::PairKey(l->second, r->second), BpeModel::Merge{rank++, result->second});
    }
    std::optional<TokenId> unk;
    if (const auto u = model.find("unk_token"); u != model.end() && u->is_string()) {
      const auto it = vocab.find(u->get<std::string>());
      if (it == vocab.end()) return Error("unk_token is not in the vocabulary");
      unk = it->second;
    }
    return std::make_unique<BpeModel>(std::move(vocab), std::move(merges), BoolOr(model, "byte_fallback", false), unk,
                                      BoolOr(model, "fuse_unk", false), BoolOr(model, "ignore_merges", false));
  }

  absl::Status Normalizer(const json& n, std::vector<TextRewrite>& steps, int depth = 0) const {
    if (n.is_null()) return absl::OkStatus();
    if (depth > kMaxNesting) return Error("normalizer Sequences nested too deeply");
    const std::string type = TypeOf(n);
    if (type == "Sequence") {
      const auto list = n.find("normalizers");
      if (list == n.end() || !list->is_array()) return Error("normalizer Sequence without 'normalizers'");
      for (const json& item : *list) RETURN_IF_ERROR(Normalizer(item, steps, depth + 1));
      return absl::OkStatus();
    }
    if (type == "Prepend") {
      steps.push_back({TextRewrite::Kind::kPrepend, "", StringOr(n, "prepend", "")});
      return absl::OkStatus();
    }
    if (type == "NFC") {
      steps.push_back({TextRewrite::Kind::kNfc, "", ""});
      return absl::OkStatus();
    }
    if (type == "Replace") {
      ASSIGN_OR_RETURN(TextRewrite rewrite, Replace(n));
      steps.push_back(std::move(rewrite));
      return absl::OkStatus();
    }
    return Unsupported(absl::StrCat("normalizer '", type, "'"));
  }

  absl::StatusOr<TextRewrite> Replace(const json& r) const {
    const auto pattern = r.find("pattern");
    if (pattern == r.end() || !pattern->is_object() || !pattern->contains("String") || !(*pattern)["String"].is_string()) {
      return Unsupported("Replace with a regex pattern (only String patterns)");
    }
    const std::string from = (*pattern)["String"].get<std::string>();
    if (from.empty()) return Error("Replace with an empty pattern");
    return TextRewrite{TextRewrite::Kind::kReplace, from, StringOr(r, "content", "")};
  }

  // Collects the splits of a Sequence up to its closing ByteLevel step, if it has one.
  absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFrom(const json& p) const {
    if (p.is_null()) return std::unique_ptr<PreTokenizer>();
    const std::string type = TypeOf(p);
    if (type == "Metaspace") {
      const std::string replacement = StringOr(p, "replacement", "\u2581");
      RETURN_IF_ERROR(OneCharacter(replacement, "Metaspace replacement"));
      std::string scheme = StringOr(p, "prepend_scheme", BoolOr(p, "add_prefix_space", true) ? "always" : "never");
      if (scheme != "always" && scheme != "first" && scheme != "never") return Unsupported("Metaspace prepend_scheme " + scheme);
      return MakeMetaspacePreTokenizer(replacement, scheme == "always", scheme == "first", BoolOr(p, "split", true));
    }
    std::vector<SplitStep> splits;
    const json* byte_level = nullptr;
    std::vector<const json*> steps;
    if (type == "Sequence") {
      const auto list = p.find("pretokenizers");
      if (list == p.end() || !list->is_array()) return Error("pre_tokenizer Sequence without 'pretokenizers'");
      for (const json& item : *list) steps.push_back(&item);
    } else {
      steps.push_back(&p);
    }
    for (const json* step : steps) {
      if (byte_level != nullptr) return Unsupported("pre-tokenizer steps after ByteLevel");
      const std::string step_type = TypeOf(*step);
      if (step_type == "ByteLevel") {
        byte_level = step;
      } else if (step_type == "Digits") {
        splits.push_back({BoolOr(*step, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"});
      } else if (step_type == "Split") {
        ASSIGN_OR_RETURN(SplitStep split, Split(*step));
        splits.push_back(std::move(split));
      } else {
        return Unsupported(absl::StrCat("pre-tokenizer '", step_type, "'"));
      }
    }
    auto made = byte_level == nullptr ? MakeSplitPreTokenizer(std::move(splits))
                                      : MakeByteLevelPreTokenizer(std::move(splits), BoolOr(*byte_level, "use_regex", true),
                                                                  BoolOr(*byte_level, "add_prefix_space", false));
    if (!made.ok()) return Error(std::string(made.status().message()));
    return made;
  }

  absl::StatusOr<SplitStep> Split(const json& step) const {
    const auto pattern = step.find("pattern");
    if (pattern == step.end() || !pattern->is_object()) return Error("Split pre-tokenizer without a 'pattern' object");
    SplitStep split;
    if (const auto regex = pattern->find("Regex"); regex != pattern->end() && regex->is_string()) {
      split.regex = regex->get<std::string>();
    } else if (const auto literal = pattern->find("String"); literal != pattern->end() && literal->is_string()) {
      if (literal->get<std::string>().empty()) return Error("Split with an empty String pattern");
      split.regex = LiteralRegex(literal->get<std::string>());
    } else {
      return Error("Split pattern is neither a String nor a Regex");
    }
    if (BoolOr(step, "invert", false)) return Unsupported("inverted Split pre-tokenizer");
    const std::string behavior = StringOr(step, "behavior", "");
    if (behavior == "Isolated") {
      split.behavior = SplitBehavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      split.behavior = SplitBehavior::kMergedWithPrevious;
    } else {
      return Unsupported(absl::StrCat("Split behavior '", behavior, "' (only Isolated and MergedWithPrevious)"));
    }
    return split;
  }

  struct DecoderSpec {
    std::vector<TextRewrite> replacements;
    bool byte_fallback = false;
    bool byte_level = false;
    int strip_leading_spaces = 0;
  };

  absl::Status Decoder(const json& d, DecoderSpec& spec, int depth = 0) const {
    if (d.is_null()) return absl::OkStatus();
    if (depth > kMaxNesting) return Error("decoder Sequences nested too deeply");
    const std::string type = TypeOf(d);
    if (type == "Sequence") {
      const auto list = d.find("decoders");
      if (list == d.end() || !list->is_array()) return Error("decoder Sequence without 'decoders'");
      for (const json& item : *list) RETURN_IF_ERROR(Decoder(item, spec, depth + 1));
    } else if (type == "Replace") {
      ASSIGN_OR_RETURN(TextRewrite rewrite, Replace(d));
      spec.replacements.push_back(std::move(rewrite));
    } else if (type == "ByteFallback") {
      spec.byte_fallback = true;
    } else if (type == "Fuse") {
      // Decoding always fuses the tokens' text.
    } else if (type == "Strip") {
      const auto start = d.find("start");
      const auto stop = d.find("stop");
      if (StringOr(d, "content", "") != " " || start == d.end() || !start->is_number_unsigned() || start->get<uint64_t>() > 16 ||
          (stop != d.end() && !(stop->is_number_integer() && stop->get<int64_t>() == 0))) {
        return Unsupported("Strip decoder (only leading spaces)");
      }
      spec.strip_leading_spaces = static_cast<int>(start->get<uint64_t>());
    } else if (type == "ByteLevel") {
      spec.byte_level = true;
    } else if (type == "Metaspace") {
      const std::string replacement = StringOr(d, "replacement", "\u2581");
      RETURN_IF_ERROR(OneCharacter(replacement, "Metaspace replacement"));
      spec.replacements.push_back({TextRewrite::Kind::kReplace, replacement, " "});
      const std::string scheme = StringOr(d, "prepend_scheme", BoolOr(d, "add_prefix_space", true) ? "always" : "never");
      if (scheme != "never") spec.strip_leading_spaces = 1;
    } else {
      return Unsupported(absl::StrCat("decoder '", type, "'"));
    }
    return absl::OkStatus();
  }

  absl::Status AddedTokens(const json& list, std::vector<AddedToken>& out) const {
    if (list.is_null()) return absl::OkStatus();
    if (!list.is_array()) return Error("'added_tokens' is not a list");
    for (const json& t : list) {
      const auto id = t.is_object() ? t.find("id") : t.end();
      const auto content = t.is_object() ? t.find("content") : t.end();
      if (!t.is_object() || id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() >= kMaxVocabulary || content == t.end() || !content->is_string()) {
        return Error("an added token lacks a valid 'id' or 'content'");
      }
      out.push_back({content->get<std::string>(), static_cast<TokenId>(id->get<int64_t>()), BoolOr(t, "special", false),
                     BoolOr(t, "lstrip", false), BoolOr(t, "rstrip", false), BoolOr(t, "normalized", false),
                     BoolOr(t, "single_word", false)});
    }
    return absl::OkStatus();
  }

  absl::Status PostProcessor(const json& p, TokenizerParts& impl, int depth = 0) const {
    if (p.is_null()) return absl::OkStatus();
    if (depth > kMaxNesting) return Error("post_processor Sequences nested too deeply");
    const std::string type = TypeOf(p);
    if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets
    if (type == "Sequence") {
      const auto list = p.find("processors");
      if (list == p.end() || !list->is_array()) return Error("post_processor Sequence without 'processors'");
      for (const json& item : *list) RETURN_IF_ERROR(PostProcessor(item, impl, depth + 1));
      return absl::OkStatus();
    }
    if (type != "TemplateProcessing") return Unsupported(absl::StrCat("post-processor '", type, "'"));
    const auto single = p.find("single");
    const auto specials = p.find("special_tokens");
    if (single == p.end() || !single->is_array()) return Error("TemplateProcessing without a 'single' template");
    bool after_sequence = false;
    for (const json& piece : *single) {
      if (piece.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const auto special = piece.find("SpecialToken");
      if (special == piece.end() || !special->is_object() || !special->contains("id") || !(*special)["id"].is_string() ||
          specials == p.end() || !specials->is_object()) {
        return Error("TemplateProcessing piece is neither a Sequence nor a known SpecialToken");
      }
      const auto entry = specials->find((*special)["id"].get<std::string>());
      if (entry == specials->end() || !entry->contains("ids") || !(*entry)["ids"].is_array()) {
        return Error("TemplateProcessing names a special token it does not define");
      }
      for (const json& id : (*entry)["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocabulary) {
          return Error("TemplateProcessing special token id out of range");
        }
        (after_sequence ? impl.template_suffix : impl.template_prefix).push_back(static_cast<TokenId>(id.get<int64_t>()));
      }
    }
    return absl::OkStatus();
  }

 private:
  const std::string& path_;
};

std::string DecodePiece(const std::string& piece, const JsonTokenizerReader::DecoderSpec& spec) {
  if (spec.byte_level) {
    std::string bytes;
    size_t i = 0;
    while (i < piece.size()) {
      const size_t n = utf8::SequenceLength(std::string_view(piece).substr(i));
      if (n == 0) return piece;
      const std::optional<uint8_t> b = ByteLevelByte(utf8::DecodeCodePoint(std::string_view(piece).substr(i), n));
      if (!b) return piece;  // not written in the byte alphabet (e.g. an added token): kept as is
      bytes += static_cast<char>(*b);
      i += n;
    }
    return bytes;
  }
  const std::string text = ApplyRewrites(piece, spec.replacements);
  if (spec.byte_fallback) {
    if (const auto b = ParseBytePiece(piece)) return std::string(1, static_cast<char>(*b));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerParts>> LoadHuggingFaceTokenizer(const std::string& path,
                                                                                 const std::string& json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
  const JsonTokenizerReader reader(path);
  if (!root.is_object()) return reader.Error("top level is not a JSON object");
  const auto field = [&root](const char* key) -> const json& {
    static const json null_json;
    const auto it = root.find(key);
    return it == root.end() ? null_json : *it;
  };
  auto impl = std::make_unique<TokenizerParts>();
  ASSIGN_OR_RETURN(impl->model, reader.Model(field("model")));
  RETURN_IF_ERROR(reader.Normalizer(field("normalizer"), impl->normalizer));
  ASSIGN_OR_RETURN(impl->pre_tokenizer, reader.PreTokenizerFrom(field("pre_tokenizer")));
  RETURN_IF_ERROR(reader.AddedTokens(field("added_tokens"), impl->added_tokens));
  RETURN_IF_ERROR(reader.PostProcessor(field("post_processor"), *impl));
  JsonTokenizerReader::DecoderSpec decoder;
  RETURN_IF_ERROR(reader.Decoder(field("decoder"), decoder));

  impl->IndexVocabulary();
  // Hugging Face matches a normalized added token by its content as the normalizer writes it.
  for (AddedToken& t : impl->added_tokens) {
    if (t.normalized) t.content = ApplyRewrites(t.content, impl->normalizer);
  }
  impl->raw_added_tokens = AddedTokenMatcher(impl->added_tokens, /*normalized=*/false);
  impl->normalized_added_tokens = AddedTokenMatcher(impl->added_tokens, /*normalized=*/true);
  for (TokenId id : impl->template_prefix) {
    if (id >= static_cast<TokenId>(impl->pieces.size())) return reader.Error("post-processor token id outside the vocabulary");
  }
  for (TokenId id : impl->template_suffix) {
    if (id >= static_cast<TokenId>(impl->pieces.size())) return reader.Error("post-processor token id outside the vocabulary");
  }
  impl->strip_leading_spaces = decoder.strip_leading_spaces;
  impl->decoded_bytes.reserve(impl->pieces.size());
  for (const std::string& piece : impl->pieces) {
    impl->decoded_bytes.push_back(DecodePiece(piece, decoder));
    impl->byte_token.push_back(decoder.byte_fallback && ParseBytePiece(piece).has_value());
  }
  return impl;
}

}  // namespace anyprec
