// A count of nesting levels that the parser and the interpreter keep to bound their recursion:
// a NestingLevel adds one level for as long as it lives.
#pragma once

namespace anyprec::jinja {

class NestingLevel {
 public:
  explicit NestingLevel(int& depth) : depth_(++depth) {}
  ~NestingLevel() { --depth_; }
  NestingLevel(const NestingLevel&) = delete;
  NestingLevel& operator=(const NestingLevel&) = delete;

 private:
  int& depth_;
};

}  // namespace anyprec::jinja
