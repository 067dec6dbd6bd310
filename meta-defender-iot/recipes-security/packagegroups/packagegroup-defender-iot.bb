SUMMARY = "Defender for IoT security micro agent"
DESCRIPTION = "The security micro agent, and its ptest package when the \
               distro enables ptest."
HOMEPAGE = "https://github.com/meta-defender-iot/meta-defender-iot"
BUGTRACKER = "https://github.com/meta-defender-iot/meta-defender-iot/issues"
SECTION = "security"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "defender-iot-micro-agent \
                  ${@bb.utils.contains('DISTRO_FEATURES', 'ptest', 'defender-iot-micro-agent-ptest', '', d)} \
                  "
