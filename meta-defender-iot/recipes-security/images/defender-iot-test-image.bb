SUMMARY = "QEMU test image for the Defender for IoT security micro agent"
DESCRIPTION = "core-image-minimal plus the agent, an SSH server for the \
               brute-force tests and iptables for the firewall posture checks. \
               Boot it with runqemu, or test it with testimage (kas/opt/test.yml)."
HOMEPAGE = "https://github.com/meta-defender-iot/meta-defender-iot"
BUGTRACKER = "https://github.com/meta-defender-iot/meta-defender-iot/issues"
SECTION = "images"
LICENSE = "MIT"

# An image has no CVEs of its own: cve-check reports its packages'.
CVE_PRODUCT = ""

inherit core-image

# What core-image-minimal installs, and the agent, dropbear and iptables.
IMAGE_INSTALL = "packagegroup-core-boot packagegroup-defender-iot dropbear iptables ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""

# Room for the agent's C tests and fixtures (ptest) and its state.
IMAGE_ROOTFS_EXTRA_SPACE = "32768"
QB_MEM = "-m 512"

TEST_SUITES ?= "ping ssh ptest defender_iot"
