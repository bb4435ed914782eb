#include "serve/web_assets.h"

#include <array>

extern "C" {
extern const char optforge_web_index_html_begin[], optforge_web_index_html_end[];
extern const char optforge_web_app_js_begin[], optforge_web_app_js_end[];
extern const char optforge_web_style_css_begin[], optforge_web_style_css_end[];
}

namespace optforge::serve {
namespace {

std::string_view blob(const char* b, const char* e) { return {b, size_t(e - b)}; }

}  // namespace

const WebAsset* find_web_asset(std::string_view path) {
  static const std::array<WebAsset, 4> assets = {{
      {"/", "text/html; charset=utf-8", blob(optforge_web_index_html_begin, optforge_web_index_html_end)},
      {"/index.html", "text/html; charset=utf-8", blob(optforge_web_index_html_begin, optforge_web_index_html_end)},
      {"/app.js", "text/javascript; charset=utf-8", blob(optforge_web_app_js_begin, optforge_web_app_js_end)},
      {"/style.css", "text/css; charset=utf-8", blob(optforge_web_style_css_begin, optforge_web_style_css_end)},
  }};
  for (const WebAsset& a : assets)
    if (a.path == path) return &a;
  return nullptr;
}

}  // namespace optforge::serve
