// The channel every anyprec client (anyprec client, anyprec-loadtest) opens to the server.
#pragma once

#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace anyprec {

// A channel to `target` (host:port, or any gRPC target such as dns:///name:port), over TLS
// trusting the PEM roots in `tls_ca_path` when that is not empty. Requests are spread
// round-robin over every address the target resolves to, so that a headless Kubernetes
// Service balances per request rather than pinning the client to one pod.
std::shared_ptr<grpc::Channel> ConnectToServer(const std::string& target, const std::string& tls_ca_path);

}  // namespace anyprec
