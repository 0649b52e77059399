// anyprec.v1.Admin: tenants read and changed at run time by callers with an admin key.
#pragma once

#include "anyprec/v1/admin.grpc.pb.h"
#include "server/tenants.h"

namespace anyprec::server {

class AdminService final : public anyprec::v1::Admin::CallbackService {
 public:
  explicit AdminService(TenantRegistry& tenants) : tenants_(tenants) {}

  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* context, const anyprec::v1::ListTenantsRequest* request,
                                        anyprec::v1::ListTenantsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateTenant(grpc::CallbackServerContext* context, const anyprec::v1::UpdateTenantRequest* request,
                                         anyprec::v1::TenantInfo* response) override;

 private:
  TenantRegistry& tenants_;
};

}  // namespace anyprec::server
