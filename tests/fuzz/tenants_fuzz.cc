// The tenants file parser on arbitrary text: an error, or a policy whose every tenant's
// widths lie within the served ones and that writes back to text parsing to the same policy.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/tenants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const anyprec::WidthRange widths{3, 8};
  const auto policy = anyprec::server::ParseTenants(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", widths);
  if (!policy.ok()) return 0;
  for (const auto& [name, tenant] : policy->tenants) {
    if (tenant.min_bits < widths.min || tenant.max_bits > widths.max || tenant.default_bits < tenant.min_bits ||
        tenant.default_bits > tenant.max_bits) {
      __builtin_trap();
    }
  }
  const auto again = anyprec::server::ParseTenants(anyprec::server::SerializeTenants(*policy), "fuzz (written back)", widths);
  if (!again.ok() || again->tenants.size() != policy->tenants.size()) __builtin_trap();
  return 0;
}
