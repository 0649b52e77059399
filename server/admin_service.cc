#include "server/admin_service.h"

#include "server/generation_service.h"
#include "server/grpc_status.h"
#include "server/logging.h"

namespace anyprec::server {
namespace {

namespace pb = anyprec::v1;

void ToProto(const Tenant& t, pb::TenantInfo& out) {
  out.set_name(t.name);
  out.set_default_bits(t.default_bits);
  out.set_min_bits(t.min_bits);
  out.set_max_bits(t.max_bits);
  out.set_max_running(t.limits.max_running);
  out.set_max_queued(t.limits.max_queued);
  out.set_weight(t.limits.weight);
  out.set_api_keys(static_cast<uint32_t>(t.key_hashes.size()));
}

std::optional<int> Bits(bool has, uint32_t value) {
  if (!has) return std::nullopt;
  return static_cast<int>(std::min<uint32_t>(value, 64));
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::ListTenants(grpc::CallbackServerContext* context, const pb::ListTenantsRequest*,
                                                    pb::ListTenantsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (const absl::Status s = tenants_.AuthenticateAdmin(Authorization(*context)); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  const std::shared_ptr<const TenantPolicy> policy = tenants_.policy();
  for (const auto& [name, tenant] : policy->tenants) ToProto(tenant, *response->add_tenants());
  response->set_anonymous_tenant(policy->anonymous_tenant.value_or(""));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::UpdateTenant(grpc::CallbackServerContext* context, const pb::UpdateTenantRequest* request,
                                                     pb::TenantInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (const absl::Status s = tenants_.AuthenticateAdmin(Authorization(*context)); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  const absl::StatusOr<Tenant> updated =
      tenants_.Update(request->name(), Bits(request->has_default_bits(), request->default_bits()),
                      Bits(request->has_min_bits(), request->min_bits()), Bits(request->has_max_bits(), request->max_bits()));
  if (!updated.ok()) {
    reactor->Finish(ToGrpc(updated.status()));
    return reactor;
  }
  Log(spdlog::level::info, "tenant updated",
      {{"tenant", updated->name}, {"default_bits", updated->default_bits}, {"min_bits", updated->min_bits},
       {"max_bits", updated->max_bits}, {"peer", context->peer()}});
  ToProto(*updated, *response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace anyprec::server
