// Streams a file to an HTTP response with libuv file I/O, one chunk in flight at a time, so a
// 256 MiB artifact download costs a chunk of memory, not the file.
#pragma once

#include <uv.h>

#include <string>

#include "adapters/http/response.h"

namespace agentlab::daemon {

// Answers 404 `artifact file missing` when the file does not exist, 500 `failed to open
// artifact` when it cannot be opened; otherwise 200 with Content-Length and the bytes.
void stream_file(uv_loop_t* loop, http::ResponseWriter writer, const std::string& path,
                 const std::string& content_type, http::HeaderList extra_headers);

}  // namespace agentlab::daemon
