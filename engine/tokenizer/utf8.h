// UTF-8 helpers shared by the tokenizers' encoders and decoders.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace anyprec::utf8 {

// Length of the well-formed UTF-8 sequence at the start of `s`; 0 if it is malformed,
// or if `s` ends inside it (then IsIncompletePrefix tells the two apart).
size_t SequenceLength(std::string_view s);

// True when `s` is the start of a well-formed sequence that has not ended yet.
bool IsIncompletePrefix(std::string_view s);

// Decodes the well-formed sequence at the start of `s`.
char32_t DecodeCodePoint(std::string_view s, size_t length);

void AppendCodePoint(char32_t cp, std::string& out);

bool IsValid(std::string_view s);

// Replaces each maximal ill-formed subsequence with U+FFFD, as Rust's from_utf8_lossy does.
std::string Sanitize(std::string_view s);

// Moves the longest valid prefix of `pending` to `out`, keeping a trailing incomplete
// sequence in `pending`; ill-formed bytes become U+FFFD.
void DrainComplete(std::string& pending, std::string& out);

// Unicode White_Space, as Rust's char::is_whitespace.
bool IsWhitespace(char32_t cp);

// Canonical composition (NFC) of valid UTF-8 `s`, by utf8proc.
std::string Nfc(std::string_view s);

}  // namespace anyprec::utf8
