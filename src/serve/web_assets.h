// The web page's files, embedded at build time (web_assets.S, from data/web/).
#pragma once

#include <string_view>

namespace optforge::serve {

struct WebAsset {
  std::string_view path;  // URL path: "/", "/app.js", "/style.css"
  std::string_view content_type;
  std::string_view body;
};

// nullptr when no embedded file has this URL path.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace optforge::serve
