#include "proto/client_channel.h"

#include <fstream>
#include <sstream>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace anyprec {

std::shared_ptr<grpc::Channel> ConnectToServer(const std::string& target, const std::string& tls_ca_path) {
  grpc::ChannelArguments arguments;
  arguments.SetLoadBalancingPolicyName("round_robin");
  if (tls_ca_path.empty()) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
  std::stringstream roots;
  roots << std::ifstream(tls_ca_path).rdbuf();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = roots.str();
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), arguments);
}

}  // namespace anyprec
