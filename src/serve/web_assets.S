/* The web page's files (data/web/), embedded in the binary so `optforge serve` needs no data
   directory. Paths are relative to the source root (CMake passes -Wa,-I<root>). */

        .macro optforge_web_blob name, path
        .section .rodata
        .balign 16
        .globl optforge_web_\name\()_begin, optforge_web_\name\()_end
        .type optforge_web_\name\()_begin, %object
optforge_web_\name\()_begin:
        .incbin "\path"
optforge_web_\name\()_end:
        .byte 0
        .endm

        optforge_web_blob index_html, "data/web/index.html"
        optforge_web_blob app_js, "data/web/app.js"
        optforge_web_blob style_css, "data/web/style.css"

/* Data only: tell the linker this object does not need an executable stack. */
        .section .note.GNU-stack,"",%progbits
