// Runs a test body once per SIMD target that Highway compiled and this CPU supports, so that
// every dispatched kernel (not only the best one here) is checked against its reference.
#pragma once

#include <functional>

#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace anyprec::testing {

inline void ForEachSimdTarget(const std::function<void()>& body) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

}  // namespace anyprec::testing
