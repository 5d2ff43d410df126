// The web page's files (server/web/), built into the binary by
// cmake/embed_files.cmake so that the server needs nothing beside it.
#ifndef PRIMAPS_SERVER_WEB_ASSETS_H_
#define PRIMAPS_SERVER_WEB_ASSETS_H_

#include <string_view>

namespace primaps {

struct WebAsset {
  const char* path;  // "/index.html", "/app.js", ...
  const char* content_type;
  std::string_view body;
};

// Every file of server/web/; ends with an entry whose path is null.
const WebAsset* WebAssets();

}  // namespace primaps

#endif  // PRIMAPS_SERVER_WEB_ASSETS_H_
