// SPDX-License-Identifier: MIT
#include "devices/device_spec.h"

#include <gtest/gtest.h>

namespace ioasid::devices {
namespace {

TEST(DeviceSpec, PciAddressesRoundTrip) {
  EXPECT_EQ(*parse_pci_address("0000:00:03.0"), 0x18);
  EXPECT_EQ(*parse_pci_address("3a:1f.7"), 0x3aff);
  EXPECT_EQ(pci_address(0x3aff), "0000:3a:1f.7");
  for (const char* bad : {"", "00:03", "0001:00:03.0", "00:20.0", "00:03.8", "100:00.0", "zz:00.0", "00:03.0x"})
    EXPECT_EQ(parse_pci_address(bad).code(), EINVAL) << bad;
}

TEST(DeviceSpec, ParsesEveryField) {
  auto dma = parse_device_spec("dma,name=dma7,pci=00:07.1,pasid=16,pri,ats");
  ASSERT_TRUE(dma.ok()) << dma.error().why;
  EXPECT_EQ(dma->name, "dma7");
  EXPECT_EQ(dma->rid, 0x39);
  EXPECT_EQ(dma->pasid_bits, 16u);
  EXPECT_TRUE(dma->pri && dma->ats);
  EXPECT_EQ(dma->capability_flags(), IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS);
  EXPECT_EQ(describe(*dma), "dma,name=dma7,pci=0000:00:07.1,pasid=16,pri,ats");
  auto dsa = parse_device_spec("dsa,name=dsa0,pci=00:05.0");
  ASSERT_TRUE(dsa.ok());
  EXPECT_EQ(dsa->num_wqs, 8u);
  EXPECT_EQ(dsa->pasid_bits, 20u);
  EXPECT_TRUE(dsa->capability_flags() & IOASID_DEVICE_SIOV);
}

TEST(DeviceSpec, RejectsWhatCannotExist) {
  for (const char* bad : {"gpu,name=x,pci=00:01.0", "dma,pci=00:01.0", "dma,name=x", "dma,name=x,pci=00:01.0,pri",
                          "dma,name=x,pci=00:01.0,pasid=21", "dma,name=x,pci=00:01.0,wqs=2",
                          "dma,name=x,pci=00:01.0,color=red", "dma,name=0123456789012345678901234567890123,pci=00:01.0"})
    EXPECT_EQ(parse_device_spec(bad).code(), EINVAL) << bad;
}

// Every number and string of a spec is bounded, and the refusal names the bound: a
// device-add or --device with wqs=4294967295 once made the daemon allocate 24 GB.
TEST(DeviceSpec, EveryFieldIsBoundedAndTheRefusalNamesTheBound) {
  struct Row {
    const char* spec;
    const char* names_the_bound;
  };
  const Row rows[] = {
      {"dsa,name=x,pci=00:01.0,wqs=4294967295", "1..64"},
      {"dsa,name=x,pci=00:01.0,wqs=99999999999999999999999", "1..64"},
      {"dsa,name=x,pci=00:01.0,wqs=65", "1..64"},
      {"dsa,name=x,pci=00:01.0,wqs=0", "1..64"},
      {"dma,name=x,pci=00:01.0,pasid=21", "0..20"},
      {"dma,name=x,pci=00:01.0,pasid=4294967296", "0..20"},
      {"dma,name=01234567890123456789012345678901,pci=00:01.0", "1..31"},
      {"dma,name=a b,pci=00:01.0", "A-Z a-z 0-9"},
      {"dma,name=00:04.0,pci=00:01.0", "A-Z a-z 0-9"},  // would read as a PCI address
      {"dma,name=dma\n0,pci=00:01.0", "A-Z a-z 0-9"},
      {"dma,name=d\xc3\xa9,pci=00:01.0", "A-Z a-z 0-9"},
  };
  for (const Row& row : rows) {
    const auto parsed = parse_device_spec(row.spec);
    ASSERT_FALSE(parsed.ok()) << row.spec;
    EXPECT_EQ(parsed.code(), EINVAL) << row.spec;
    EXPECT_NE(parsed.error().why.find(row.names_the_bound), std::string::npos)
        << row.spec << ": " << parsed.error().why;
  }
  // At the bounds.
  auto widest = parse_device_spec("dsa,name=0123456789012345678901234567890,pci=00:01.0,pasid=20,wqs=64");
  ASSERT_TRUE(widest.ok()) << widest.error().why;
  EXPECT_EQ(widest->num_wqs, 64u);
  EXPECT_EQ(widest->name.size(), 31u);
  EXPECT_TRUE(parse_device_spec("dsa,name=dsa_1.a-B,pci=00:01.0,wqs=1").ok());

  // A spec longer than any valid one is refused without being echoed whole.
  const std::string huge = "dma,name=x,pci=00:01.0," + std::string(100000, 'a');
  const auto long_spec = parse_device_spec(huge);
  ASSERT_FALSE(long_spec.ok());
  EXPECT_EQ(long_spec.code(), EINVAL);
  EXPECT_NE(long_spec.error().why.find("256"), std::string::npos) << long_spec.error().why.substr(0, 300);
  EXPECT_LT(long_spec.error().why.size(), 400u);
}

TEST(DeviceSpec, DefaultsAreAPasidPriAtsFunctionAPlainOneAndADsaEngine) {
  const auto defaults = default_devices();
  ASSERT_EQ(defaults.size(), 3u);
  EXPECT_EQ(defaults[0].capability_flags(), IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS);
  EXPECT_EQ(defaults[1].capability_flags(), 0u);
  EXPECT_EQ(defaults[2].capability_flags(),
            IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS | IOASID_DEVICE_SIOV);
  EXPECT_EQ(defaults[2].num_wqs, 8u);
  EXPECT_EQ(describe(defaults[2]), "dsa,name=dsa0,pci=0000:00:05.0,pasid=20,pri,ats,wqs=8");
  EXPECT_NE(defaults[0].rid, defaults[1].rid);
  EXPECT_NE(defaults[1].rid, defaults[2].rid);
}

}  // namespace
}  // namespace ioasid::devices
