// Early-return helpers for absl::Status, which the Debian 12 Abseil release does not ship.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ANYPREC_CONCAT_INNER(a, b) a##b
#define ANYPREC_CONCAT(a, b) ANYPREC_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (absl::Status status_ = (expr); !status_.ok()) { \
      return status_;                                  \
    }                                                  \
  } while (false)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(ANYPREC_CONCAT(statusor_, __LINE__), lhs, expr)
