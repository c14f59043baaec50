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
