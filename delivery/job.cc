#include "delivery/job.h"

#include "core/smtp/ascii.h"

namespace spate::delivery {

void Message::AddRecipient(std::string_view address, uint32_t spool_index) {
  if (spool_index != recipients() && indices_.empty()) {
    for (uint32_t p = 0; p < recipients(); ++p)
      indices_.push_back(p);
  }
  if (!indices_.empty())
    indices_.push_back(spool_index);
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
