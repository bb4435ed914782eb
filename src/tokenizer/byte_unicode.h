// GPT-2's byte-to-unicode table. Byte-level BPE works on strings of printable codepoints, one per
// byte, so that vocab.json and merges.txt stay readable text: bytes that are already printable
// Latin-1 map to themselves, the other 68 map to U+0100 and up. Space becomes 'Ġ' (U+0120).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace optforge {

// The codepoint that stands for `byte` in vocab and merges strings.
char32_t byte_to_codepoint(uint8_t byte);

// The inverse: the byte a codepoint stands for, or -1 if it stands for none.
int codepoint_to_byte(char32_t cp);

// UTF-8 of byte_to_codepoint(b) for every byte, precomputed for the encoder's hot loop.
const std::array<std::string, 256>& byte_symbols_utf8();

}  // namespace optforge
