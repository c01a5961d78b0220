#include "delivery/job.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/smtp/ascii.h"

namespace spate::delivery {

std::mutex& LoadedBody::Guard() const {
  static std::array<std::mutex, 64> guards;
  return guards[(reinterpret_cast<uintptr_t>(this) >> 6) % guards.size()];
}

Body LoadedBody::Get() const {
  std::lock_guard lock(Guard());
  return body_.lock();
}

Body LoadedBody::Offer(Body body) const {
  std::lock_guard lock(Guard());
  if (Body held = body_.lock())
    return held;
  body_ = body;
  return body;
}

void LoadedBody::Clear() const {
  std::lock_guard lock(Guard());
  body_.reset();
}

void RecipientList::push_back(Recipient r) {
  if (size_ == 0 && cap_ <= 1) {
    one_ = r;
    size_ = 1;
    return;
  }
  if (size_ == cap_) {
    uint32_t cap = cap_ * 2;
    auto* grown = new Recipient[cap];
    std::copy(begin(), end(), grown);
    Free();
    size_ = cap / 2;
    cap_ = cap;
    many_ = grown;
  }
  data()[size_++] = r;
}

void RecipientList::assign(const Recipient* first, const Recipient* last) {
  const auto n = static_cast<uint32_t>(last - first);
  if (n > cap_) {
    auto* grown = new Recipient[n];
    std::copy(first, last, grown);
    Free();
    cap_ = n;
    many_ = grown;
  } else {
    std::copy(first, last, data());
  }
  size_ = n;
}

void Message::Reserve(size_t recipients, size_t address_bytes) {
  offsets_.reserve(recipients + 1);
  addresses_.reserve(address_bytes);
}

void Message::AddRecipient(std::string_view address, uint32_t spool_index) {
  if (spool_index != recipients() && indices_.empty()) {
    for (uint32_t p = 0; p < recipients(); ++p)
      indices_.push_back(p);
    indices_.push_back(spool_index);  // also when it is the first: indices_ was empty
  } else if (!indices_.empty()) {
    indices_.push_back(spool_index);
  }
  addresses_.append(address);
  offsets_.push_back(static_cast<uint32_t>(addresses_.size()));
}

std::string DomainOf(std::string_view address) {
  auto at = address.rfind('@');
  std::string d(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
  for (char& c : d)
    c = smtp::AsciiLower(c);
  return d;
}

}  // namespace spate::delivery
