# SPDX-License-Identifier: MIT
# Run at install time (packaging/CMakeLists.txt, install(CODE)): installs docs/man's
# pages with the paths their FILES sections name made this install's own. The pages in
# the source tree name a Debian system's places (/lib/systemd/system, ...); an install
# into another prefix puts the unit, the rule and the sysusers snippet elsewhere, and
# its pages must say where. Done at install time because `cmake --install --prefix`
# chooses the prefix only then.
#   In: IOASID_MAN_SOURCE, IOASID_MAN_STAGE (a build directory), IOASID_MANDIR,
#       IOASID_UNITDIR, IOASID_RULESDIR, IOASID_SYSUSERSDIR (absolute, or relative to
#       the prefix).
function(absolute out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

absolute(mandir "${IOASID_MANDIR}")
absolute(unitdir "${IOASID_UNITDIR}")
absolute(rulesdir "${IOASID_RULESDIR}")
absolute(sysusersdir "${IOASID_SYSUSERSDIR}")
file(GLOB pages "${IOASID_MAN_SOURCE}/*.[148]")
foreach(page ${pages})
  get_filename_component(name "${page}" NAME)
  string(REGEX REPLACE "^.*\\.([0-9])$" "\\1" section "${name}")
  file(READ "${page}" text)
  foreach(place unitdir rulesdir sysusersdir)
    string(REPLACE "-" "\\-" ${place}_roff "${${place}}")  # roff's hyphen, as the pages write it
  endforeach()
  string(REPLACE " /lib/systemd/system/" " ${unitdir_roff}/" text "${text}")
  string(REPLACE " /lib/udev/rules.d/" " ${rulesdir_roff}/" text "${text}")
  string(REPLACE " /lib/sysusers.d/" " ${sysusersdir_roff}/" text "${text}")
  file(WRITE "${IOASID_MAN_STAGE}/man${section}/${name}" "${text}")
  file(INSTALL "${IOASID_MAN_STAGE}/man${section}/${name}" DESTINATION "${mandir}/man${section}")
endforeach()
