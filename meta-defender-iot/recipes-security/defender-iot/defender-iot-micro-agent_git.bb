SUMMARY = "Defender for IoT security micro agent"
DESCRIPTION = "A security micro agent for embedded Linux: it collects process, \
               network, login and system information, checks the device's security \
               posture, detects brute force, crypto miners, botnets and suspicious \
               network activity, and reports to Azure IoT Hub, an MQTT broker or a file."
HOMEPAGE = "https://github.com/meta-defender-iot/meta-defender-iot"
BUGTRACKER = "https://github.com/meta-defender-iot/meta-defender-iot/issues"
SECTION = "security"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://../LICENSE;md5=5d26c229c5cdcc708936dca537e58e9a"

# cmocka: the agent's C tests, built only for ptest.
DEPENDS = "cjson ${@bb.utils.contains('PTEST_ENABLED', '1', 'cmocka', '', d)}"

PV = "0.1.0+git"
SRC_URI = "git://github.com/meta-defender-iot/meta-defender-iot.git;protocol=https;branch=main \
           file://profiles/${DEFENDER_IOT_PROFILE}.json \
           file://run-ptest \
           "
SRCREV = "8c146d1d1d6ba14ca0605b0f739f498e603d18e1"

# The repository holds the layer and the agent; the agent is its agent/ directory.
S = "${UNPACKDIR}/${BP}/agent"

inherit cmake pkgconfig systemd update-rc.d useradd ptest

# The runtime configuration installed as /etc/defender-iot/config.json:
# files/profiles/<name>.json, written by `defender-iot configure`.
DEFENDER_IOT_PROFILE ?= "default"

CVE_PRODUCT = "meta-defender-iot:defender-iot-micro-agent"

# One positive option per collector, detector and transport, named after the
# feature (underscores become dashes). A detector needs the collectors it
# reads: CMake stops with the option to turn on when one is missing.
PACKAGECONFIG ??= "heartbeat system-information process network-activity listening-ports login baseline \
                   statistics sbom file-integrity \
                   brute-force crypto-miner botnet suspicious-network custom \
                   iothub mqtt local \
                   config-reference replay run-as-user mask-addresses local-socket"

PACKAGECONFIG[heartbeat] = "-DAGENT_COLLECTOR_HEARTBEAT=ON,-DAGENT_COLLECTOR_HEARTBEAT=OFF"
PACKAGECONFIG[system-information] = "-DAGENT_COLLECTOR_SYSTEM_INFORMATION=ON,-DAGENT_COLLECTOR_SYSTEM_INFORMATION=OFF"
PACKAGECONFIG[process] = "-DAGENT_COLLECTOR_PROCESS=ON,-DAGENT_COLLECTOR_PROCESS=OFF"
PACKAGECONFIG[network-activity] = "-DAGENT_COLLECTOR_NETWORK_ACTIVITY=ON,-DAGENT_COLLECTOR_NETWORK_ACTIVITY=OFF"
PACKAGECONFIG[listening-ports] = "-DAGENT_COLLECTOR_LISTENING_PORTS=ON,-DAGENT_COLLECTOR_LISTENING_PORTS=OFF"
PACKAGECONFIG[login] = "-DAGENT_COLLECTOR_LOGIN=ON,-DAGENT_COLLECTOR_LOGIN=OFF"
PACKAGECONFIG[baseline] = "-DAGENT_COLLECTOR_BASELINE=ON,-DAGENT_COLLECTOR_BASELINE=OFF,libxcrypt"
PACKAGECONFIG[statistics] = "-DAGENT_COLLECTOR_STATISTICS=ON,-DAGENT_COLLECTOR_STATISTICS=OFF"
PACKAGECONFIG[sbom] = "-DAGENT_COLLECTOR_SBOM=ON,-DAGENT_COLLECTOR_SBOM=OFF"
PACKAGECONFIG[file-integrity] = "-DAGENT_COLLECTOR_FILE_INTEGRITY=ON,-DAGENT_COLLECTOR_FILE_INTEGRITY=OFF,openssl"
PACKAGECONFIG[brute-force] = "-DAGENT_DETECTOR_BRUTE_FORCE=ON,-DAGENT_DETECTOR_BRUTE_FORCE=OFF"
PACKAGECONFIG[crypto-miner] = "-DAGENT_DETECTOR_CRYPTO_MINER=ON,-DAGENT_DETECTOR_CRYPTO_MINER=OFF"
PACKAGECONFIG[botnet] = "-DAGENT_DETECTOR_BOTNET=ON,-DAGENT_DETECTOR_BOTNET=OFF"
PACKAGECONFIG[suspicious-network] = "-DAGENT_DETECTOR_SUSPICIOUS_NETWORK=ON,-DAGENT_DETECTOR_SUSPICIOUS_NETWORK=OFF"
PACKAGECONFIG[custom] = "-DAGENT_DETECTOR_CUSTOM=ON,-DAGENT_DETECTOR_CUSTOM=OFF"
PACKAGECONFIG[iothub] = "-DAGENT_TRANSPORT_IOTHUB=ON,-DAGENT_TRANSPORT_IOTHUB=OFF,mosquitto openssl"
PACKAGECONFIG[mqtt] = "-DAGENT_TRANSPORT_MQTT=ON,-DAGENT_TRANSPORT_MQTT=OFF,mosquitto openssl"
PACKAGECONFIG[local] = "-DAGENT_TRANSPORT_LOCAL=ON,-DAGENT_TRANSPORT_LOCAL=OFF"

# The agent's build options that are not features (`build:` in a product
# profile; docs/integration.md says what each saves): a positive option per
# ON/OFF one, a variable per value. A product that documents its settings
# elsewhere drops config-reference; replay is for tests and demos.
# Link-time optimisation is the distro's choice (DISTRO_FEATURES lto:
# conf/distro/include/lto.inc puts -flto in every recipe's flags), so lto is
# not in the default; a product may still add it.
PACKAGECONFIG[config-reference] = "-DAGENT_CONFIG_REFERENCE=ON,-DAGENT_CONFIG_REFERENCE=OFF"
PACKAGECONFIG[replay] = "-DAGENT_REPLAY=ON,-DAGENT_REPLAY=OFF"
# Core capabilities: Agent_RunAsUser (started as root, keep only the
# collectors' capabilities: the SysV script's alternative to its
# unprivileged user, see /etc/default/defender-iot-agent),
# Agent_MaskRemoteAddresses, and the local transport's UNIX socket.
# Off: the agent refuses the key, naming the option.
PACKAGECONFIG[run-as-user] = "-DAGENT_RUN_AS_USER=ON,-DAGENT_RUN_AS_USER=OFF"
PACKAGECONFIG[mask-addresses] = "-DAGENT_MASK_ADDRESSES=ON,-DAGENT_MASK_ADDRESSES=OFF"
PACKAGECONFIG[local-socket] = "-DAGENT_LOCAL_SOCKET=ON,-DAGENT_LOCAL_SOCKET=OFF"
PACKAGECONFIG[lto] = "-DAGENT_LTO=ON,-DAGENT_LTO=OFF"
# The PACKAGECONFIG values above that are build options, not features
# (--list-features does not print them).
DEFENDER_IOT_BUILD_OPTIONS = "config-reference replay run-as-user mask-addresses local-socket lto"
# Largest page size the binary must load with. Empty: the toolchain's
# default (64 KiB on aarch64). "4096" drops up to ~48 KiB of padding from an
# aarch64 binary, which then no longer loads on a 64 KiB-page kernel.
DEFENDER_IOT_MAX_PAGE_SIZE ?= ""

# -Werror is for the project's own CI; a newer compiler's new warnings must
# not break a product build. The C tests are built only for ptest, and find
# their fixtures where do_install_ptest puts them on the target.
EXTRA_OECMAKE = "-DAGENT_WERROR=OFF \
                 -DAGENT_MAX_PAGE_SIZE=${DEFENDER_IOT_MAX_PAGE_SIZE} \
                 -DBUILD_TESTING=${@bb.utils.contains('PTEST_ENABLED', '1', 'ON', 'OFF', d)} \
                 -DAGENT_TEST_FIXTURES_DIR=${PTEST_PATH}/fixtures \
                 "

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --home-dir ${localstatedir}/lib/defender-iot \
                       --no-create-home --shell /sbin/nologin defender-iot"

SYSTEMD_SERVICE:${PN} = "defender-iot-agent.service"
INITSCRIPT_NAME = "defender-iot-agent"
INITSCRIPT_PARAMS = "defaults 50"

do_install:append() {
    install -d -m 0755 ${D}${sysconfdir}/defender-iot
    install -m 0644 ${UNPACKDIR}/profiles/${DEFENDER_IOT_PROFILE}.json ${D}${sysconfdir}/defender-iot/config.json
    install -d -m 0755 ${D}${sysconfdir}/default
    install -m 0644 ${S}/packaging/defender-iot-agent.default ${D}${sysconfdir}/default/defender-iot-agent
    install -d -m 0700 -o defender-iot -g defender-iot ${D}${localstatedir}/lib/defender-iot

    # systemd.bbclass drops whichever of the two the distro does not use.
    install -d ${D}${sysconfdir}/init.d
    install -m 0755 ${S}/packaging/defender-iot-agent.init ${D}${sysconfdir}/init.d/defender-iot-agent
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/packaging/defender-iot-agent.service ${D}${systemd_system_unitdir}/
    sed -i -e 's,/usr/sbin/,${sbindir}/,g' -e 's,/etc/,${sysconfdir}/,g' \
        ${D}${systemd_system_unitdir}/defender-iot-agent.service ${D}${sysconfdir}/init.d/defender-iot-agent
}

do_install_ptest() {
    install -d ${D}${PTEST_PATH}/tests
    find ${B}/tests -maxdepth 1 -type f -name 'test_*' -perm -u+x \
        -exec install -m 0755 {} ${D}${PTEST_PATH}/tests/ \;
    # Snapshot trees of /proc and /etc that the collector tests read.
    cp -R --no-dereference --no-preserve=ownership ${S}/../tests/fixtures ${D}${PTEST_PATH}/fixtures
    find ${D}${PTEST_PATH}/fixtures -name '*.py' -delete
    # What the agent must report with --list-features: the features.
    for value in ${PACKAGECONFIG}; do
        case " ${DEFENDER_IOT_BUILD_OPTIONS} " in
        *" $value "*) ;;
        *) echo "$value" ;;
        esac
    done > ${D}${PTEST_PATH}/packageconfig
}

FILES:${PN} += "${sbindir}/defender-iot-agent \
                ${sysconfdir}/defender-iot \
                ${sysconfdir}/default/defender-iot-agent \
                ${sysconfdir}/init.d/defender-iot-agent \
                ${systemd_system_unitdir}/defender-iot-agent.service \
                ${localstatedir}/lib/defender-iot \
                "
CONFFILES:${PN} = "${sysconfdir}/defender-iot/config.json ${sysconfdir}/default/defender-iot-agent"

# A daemon for the target: no native or nativesdk variant.
BBCLASSEXTEND = ""
