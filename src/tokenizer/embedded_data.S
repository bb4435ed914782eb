/* The OPT tokenizer files, embedded in the binary so `optforge tokenize` needs no data directory.
   Paths are relative to the source root (CMake passes -Wa,-I<root>). Each blob is followed by a
   NUL that is not counted in its size, so it can also be handed to C string APIs. */

        .section .rodata
        .balign 16
        .globl optforge_tok_vocab_json_begin, optforge_tok_vocab_json_end
        .type optforge_tok_vocab_json_begin, %object
optforge_tok_vocab_json_begin:
        .incbin "data/opt-tokenizer/vocab.json"
optforge_tok_vocab_json_end:
        .byte 0

        .balign 16
        .globl optforge_tok_merges_txt_begin, optforge_tok_merges_txt_end
        .type optforge_tok_merges_txt_begin, %object
optforge_tok_merges_txt_begin:
        .incbin "data/opt-tokenizer/merges.txt"
optforge_tok_merges_txt_end:
        .byte 0

/* Data only: tell the linker this object does not need an executable stack. */
        .section .note.GNU-stack,"",%progbits
