// Python's str operations on UTF-8 text, as Jinja templates see them: lengths, indices and
// slices count code points, whitespace is Python's (str.isspace), and repr/json quote text as
// Python's repr() and json.dumps(ensure_ascii=False) do. Bytes that are not UTF-8 count as one
// code point each, so no input is rejected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anyprec::jinja {

// The byte offset where each code point of `text` starts, then text.size().
std::vector<size_t> CodePointOffsets(std::string_view text);
size_t CodePointCount(std::string_view text);

// The UTF-8 encoding of `code` (U+FFFD for surrogates and values past U+10FFFF).
void AppendUtf8(char32_t code, std::string& out);

// str.strip/lstrip/rstrip: `chars` absent strips Python whitespace, else any code point of it.
std::string StripText(std::string_view text, const std::optional<std::string_view>& chars, bool left, bool right);

// str.split: absent `separator` splits on runs of whitespace and drops empty pieces;
// `max_splits` < 0 means no limit. The separator must not be empty.
std::vector<std::string> SplitText(std::string_view text, const std::optional<std::string_view>& separator, int64_t max_splits);

// str.replace; `count` < 0 replaces every occurrence. An empty `from` inserts `to` around
// every code point, as Python does.
std::string ReplaceText(std::string_view text, std::string_view from, std::string_view to, int64_t count);

// ASCII case mappings (other letters are left as they are): str.upper, str.lower,
// str.capitalize (first upper, the rest lower) and str.title (each word's first letter upper).
std::string UpperText(std::string_view text);
std::string LowerText(std::string_view text);
std::string CapitalizeText(std::string_view text);
std::string TitleText(std::string_view text);

// repr() of a str: single quotes unless the text holds ' and no ", escapes for control characters.
std::string PythonRepr(std::string_view text);
// A JSON string literal as json.dumps(ensure_ascii=False) writes it.
void AppendJsonString(std::string_view text, std::string& out);

// repr() of a float (shortest round trip, exponent outside 1e-4..1e16, ".0" on whole numbers).
std::string PythonFloatRepr(double value);

}  // namespace anyprec::jinja
