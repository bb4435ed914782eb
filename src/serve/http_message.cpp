#include "serve/http_message.h"

namespace optforge::serve {

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

}  // namespace optforge::serve
