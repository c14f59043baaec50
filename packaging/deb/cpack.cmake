# SPDX-License-Identifier: MIT
# The Debian binary packages, made by CPack's DEB generator from the install rules'
# COMPONENTs of an already-built tree (packaging/deb/build-debs.sh). Why CPack and not
# a debian/ directory built with dh: docs/ARCHITECTURE.md, "Debian packages".
#
#   ioasidd          the daemon, its systemd unit, udev rule, sysusers.d snippet and
#                    ioasidd(8); maintainer scripts for the group, udev and the unit
#   ioasid-tools     ioasidctl, ioasid-info, ioasid-run (+ man pages)
#   libioasid0       libioasid.so.0 (the client library; SONAME libioasid.so.0)
#   libioasid-dev    its headers, libioasid.so and ioasid.pc
#   ioasid-examples  the demo programs, in /usr/libexec/ioasid
# and one -dbgsym package (.ddeb) per package with ELF files: the binaries are stripped
# and their DWARF moves to /usr/lib/debug/.build-id.
set(IOASID_DEB_MAINTAINER "ioasid-cuse maintainers <maintainers@users.noreply.h-seed-d7e81513.example>"
  CACHE STRING "Maintainer field of the Debian packages")
set(IOASID_DEB_HOMEPAGE "" CACHE STRING "Homepage field of the Debian packages (left out when empty: the project has no public page yet)")
set(IOASID_DEB_RELEASE "1" CACHE STRING "Debian revision of the packages (must match packaging/deb/changelog)")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ioasid-cuse)
set(CPACK_PACKAGE_VENDOR "The ioasid-cuse authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${IOASID_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/debs)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# The staging tree is what `cmake --install` writes: only the five packages' components.
set(CPACK_COMPONENTS_ALL ioasidd ioasid-tools libioasid0 libioasid-dev ioasid-examples)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${IOASID_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${IOASID_DEB_MAINTAINER}")
if(IOASID_DEB_HOMEPAGE)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${IOASID_DEB_HOMEPAGE}")
endif()
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# dpkg-shlibdeps resolves libioasid.so.0 in libioasid0's staging tree; the dependency
# on it is written by hand below (it has no shlibs entry in the system yet).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS
  ${PROJECT_BINARY_DIR}/debs/_CPack_Packages/Linux/DEB/ioasid-cuse-${PROJECT_VERSION}-Linux/libioasid0/usr/${CMAKE_INSTALL_LIBDIR})
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# gzip: xz took ~90 s of the stage for the -dbgsym packages (~100 MB of DWARF).
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)

set(_deb ${CMAKE_CURRENT_LIST_DIR})
set(_summary_ioasidd "emulated IOMMU daemon serving /dev/ioasid and /dev/iommu")
set(_summary_ioasid-tools "tools to inspect and drive the ioasidd emulated IOMMU")
set(_summary_libioasid0 "client library for the ioasidd emulated IOMMU")
set(_summary_libioasid-dev "client library for the ioasidd emulated IOMMU - development files")
set(_summary_ioasid-examples "demo programs for the ioasidd emulated IOMMU")
set(_common_description
  "ioasidd is a user-space model of a VT-d style IOMMU behind a real character\ndevice: through CUSE (or FUSE where the kernel has no CUSE) it serves\n/dev/ioasid, with system-wide PASIDs, I/O address spaces, nested translation,\nemulated devices doing DMA, faults and page requests and a DSA-like Scalable\nIOV engine, and /dev/iommu, with Linux's iommufd uAPI over the same engine.\n.\n")
set(_more_ioasidd
  "This package contains the daemon with its systemd unit, the udev rule that\ngives the nodes to group ioasid and the sysusers.d snippet creating it.")
set(_more_ioasid-tools
  "This package contains ioasidctl (the admin socket client and event monitor),\nioasid-info and ioasid-run, which runs unchanged\niommufd programs against the daemon's /dev/iommu.")
set(_more_libioasid0
  "This package contains the shared library libioasid, C++ RAII wrappers over\nthe /dev/ioasid uAPI for applications.")
set(_more_libioasid-dev
  "This package contains the headers of libioasid and of the uAPI\n(<linux/ioasid.h>, installed under /usr/include/ioasid-cuse), the\nlibioasid.so link and the pkg-config file ioasid.pc.")
set(_more_ioasid-examples
  "This package contains the demo programs, installed in /usr/libexec/ioasid:\npasid-demo, dma-demo, mini-vmm (guest SVA), dsa-memmove, ats-copy,\niommufd-demo and iommufd-fault-demo.")

foreach(component ${CPACK_COMPONENTS_ALL})
  string(TOUPPER ${component} C)
  set(CPACK_DEBIAN_${C}_PACKAGE_NAME ${component})
  set(CPACK_COMPONENT_${C}_DESCRIPTION "${_summary_${component}}\n${_common_description}${_more_${component}}")
endforeach()
set(CPACK_DEBIAN_IOASIDD_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_IOASID-TOOLS_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_LIBIOASID0_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIBIOASID-DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_IOASID-EXAMPLES_PACKAGE_SECTION misc)

set(_exact "(= ${PROJECT_VERSION}-${IOASID_DEB_RELEASE})")
# The maintainer scripts create the group with systemd-sysusers, else addgroup; the
# unit loads cuse with modprobe (optional: the daemon falls back to FUSE).
set(CPACK_DEBIAN_IOASIDD_PACKAGE_DEPENDS "systemd-sysusers | adduser")
set(CPACK_DEBIAN_IOASIDD_PACKAGE_RECOMMENDS "kmod, ioasid-tools")
set(CPACK_DEBIAN_IOASID-TOOLS_PACKAGE_DEPENDS "libioasid0 ${_exact}")
set(CPACK_DEBIAN_IOASID-TOOLS_PACKAGE_RECOMMENDS "ioasidd")
set(CPACK_DEBIAN_IOASID-EXAMPLES_PACKAGE_DEPENDS "libioasid0 ${_exact}")
set(CPACK_DEBIAN_IOASID-EXAMPLES_PACKAGE_RECOMMENDS "ioasidd, ioasid-tools")
set(CPACK_DEBIAN_LIBIOASID-DEV_PACKAGE_DEPENDS "libioasid0 ${_exact}")
set(CPACK_DEBIAN_LIBIOASID-DEV_PACKAGE_ARCHITECTURE amd64)
# libioasid0 ships its shlibs file (">=" this version) and the ldconfig trigger.
# (CPack reads this one globally; only libioasid0 holds a shared library.)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_LIBIOASID0_PACKAGE_CONTROL_EXTRA ${_deb}/libioasid0/triggers)
# What dh_installsysusers, dh_installudev and dh_installsystemd would have generated.
set(CPACK_DEBIAN_IOASIDD_PACKAGE_CONTROL_EXTRA
  ${_deb}/ioasidd/postinst ${_deb}/ioasidd/prerm ${_deb}/ioasidd/postrm)

include(CPack)
