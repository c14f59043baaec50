# SPDX-License-Identifier: MIT
# Run at build time (packaging/CMakeLists.txt): writes one of docs/man's pages with the
# paths its FILES section names made this build's own. The pages in the source tree name
# a Debian system's places (/lib/systemd/system, /usr/libexec/ioasid, ...); a tree
# configured for another prefix installs the unit, the rule, the sysusers snippet and
# the demos elsewhere, and its pages must say where.
#   cmake -DPAGE=in -DOUT=out -DUNITDIR=... -DRULESDIR=... -DSYSUSERSDIR=... -DEXAMPLESDIR=... -P man-page.cmake
# (each directory absolute).
file(READ "${PAGE}" text)
foreach(place UNITDIR RULESDIR SYSUSERSDIR EXAMPLESDIR)
  string(REPLACE "-" "\\-" ${place}_roff "${${place}}")  # roff's hyphen, as the pages write it
endforeach()
string(REPLACE " /lib/systemd/system/" " ${UNITDIR_roff}/" text "${text}")
string(REPLACE " /lib/udev/rules.d/" " ${RULESDIR_roff}/" text "${text}")
string(REPLACE " /usr/lib/sysusers.d/" " ${SYSUSERSDIR_roff}/" text "${text}")
string(REPLACE " /usr/libexec/ioasid/" " ${EXAMPLESDIR_roff}/" text "${text}")
file(WRITE "${OUT}" "${text}")
