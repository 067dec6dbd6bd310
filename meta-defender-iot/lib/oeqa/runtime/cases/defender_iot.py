#
# SPDX-License-Identifier: MIT
#
# Runtime tests of the Defender for IoT micro agent on a booted image
# (testimage: TEST_SUITES += "defender_iot"). The checks are plain functions
# over a run(cmd) -> (status, output) callable, the interface of the
# project's QEMU integration tests (tests/integration/), so they read the
# same whether oeqa, labgrid or a lab board runs the command.

import json
import time

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

AGENT = "defender-iot-agent"
CONFIG_DIR = "/etc/defender-iot"
STATE_DIR = "/var/lib/defender-iot"
TEST_CONFIG = CONFIG_DIR + "/oeqa.json"
MESSAGES = STATE_DIR + "/oeqa-messages.json"


def check(run, cmd):
    status, output = run(cmd)
    if status != 0:
        raise AssertionError("'%s' exited %d:\n%s" % (cmd, status, output))
    return output


def wait_for(what, probe, timeout, interval=2):
    """Poll probe() -> (done, seen) until done; fail saying what was awaited
    and what was seen last."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError("waited %ds for %s; last seen: %s" % (timeout, what, seen))
        time.sleep(interval)


def list_features(run):
    """The compiled-in features as PACKAGECONFIG values ('network-activity')."""
    out = check(run, AGENT + " --list-features")
    return sorted(line.split()[1].replace("_", "-") for line in out.splitlines() if len(line.split()) >= 2)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def once(run, config=CONFIG_DIR + "/config.json"):
    """One collection from the device: the events of the security messages
    it prints (alerts and large payloads come in messages of their own)."""
    out = check(run, "%s --once --config %s 2>/dev/null" % (AGENT, config))
    messages = json_lines(out)
    if not messages:
        raise AssertionError("--once printed no message:\n%s" % out[:2000])
    return [event for message in messages for event in message["Events"]]


def posture(events):
    """Check id -> Result from the Baseline event."""
    for event in events:
        if event["Name"] == "Baseline":
            return {entry["Id"]: entry["Result"] for entry in event["Payload"]}
    raise AssertionError("no Baseline event in %s" % sorted({e["Name"] for e in events}))


def service(run, action):
    if run("command -v systemctl")[0] == 0:
        return run("systemctl %s %s" % (action, AGENT))
    return run("/etc/init.d/%s %s" % (AGENT, action))


def agent_uid(run):
    status, pid = run("pidof %s" % AGENT)
    if status != 0 or not pid.strip():
        return False, "no %s process" % AGENT
    status, out = run("grep '^Uid:' /proc/%s/status" % pid.split()[0])
    return status == 0, out


class DefenderIotAgentTest(OERuntimeTestCase):

    def setUp(self):
        self.run_cmd = self.target.run

    @OEHasPackage(["defender-iot-micro-agent"])
    def test_installed_as_packaged(self):
        run = self.run_cmd
        check(run, "test -x /usr/sbin/%s" % AGENT)
        check(run, "test -r %s/config.json" % CONFIG_DIR)
        mode = check(run, "stat -c '%%a %%U' %s" % STATE_DIR).split()
        self.assertEqual(mode, ["700", "defender-iot"], "state directory mode and owner")
        version = check(run, AGENT + " --version")
        self.assertIn(AGENT, version)

    @OEHasPackage(["defender-iot-micro-agent"])
    def test_config_is_valid(self):
        check(self.run_cmd, AGENT + " --check-config --config %s/config.json" % CONFIG_DIR)

    @OEHasPackage(["defender-iot-micro-agent-ptest"])
    def test_list_features_matches_packageconfig(self):
        run = self.run_cmd
        path = "%s/defender-iot-micro-agent/ptest/packageconfig" % self.td.get("libdir", "/usr/lib")
        wanted = sorted(check(run, "cat " + path).split())
        self.assertEqual(list_features(run), wanted,
                         "--list-features against the recipe's PACKAGECONFIG (%s)" % path)

    @OEHasPackage(["defender-iot-micro-agent"])
    def test_once_reports_the_device(self):
        events = once(self.run_cmd)
        names = {e["Name"] for e in events}
        features = list_features(self.run_cmd)
        if "heartbeat" in features:
            self.assertIn("Heartbeat", names)
        if "system-information" in features:
            info = next(e for e in events if e["Name"] == "SystemInformation")["Payload"][0]
            kernel = check(self.run_cmd, "uname -r").strip()
            self.assertEqual(info.get("KernelRelease"), kernel, "SystemInformation against uname -r")

    @OEHasPackage(["defender-iot-micro-agent"])
    def test_posture_report(self):
        if "baseline" not in list_features(self.run_cmd):
            self.skipTest("the baseline collector is not in PACKAGECONFIG")
        results = posture(once(self.run_cmd))
        self.assertTrue(results, "the Baseline event has no checks")
        unknown = {k: v for k, v in results.items() if v not in ("Pass", "Fail", "Skip", "Error")}
        self.assertFalse(unknown, "results outside Pass/Fail/Skip/Error")
        # The test image runs dropbear and has a root account: something to judge.
        self.assertIn("Fail", results.values(), "a stock test image passing every check: %s" % results)

    @OEHasPackage(["defender-iot-micro-agent"])
    def test_service_runs_unprivileged_and_reports(self):
        run = self.run_cmd
        if "local" not in list_features(run):
            self.skipTest("the local transport is not in PACKAGECONFIG")
        config = {"Agent_Transport": "local", "Local_Path": MESSAGES,
                  "CollectorsCore_PriorityIntervals": "5,5,5"}
        check(run, "echo '%s' > %s && chmod 0644 %s" % (json.dumps(config), TEST_CONFIG, TEST_CONFIG))
        check(run, "cp /etc/default/%s /tmp/%s.default" % (AGENT, AGENT))
        check(run, "echo 'DEFENDER_IOT_AGENT_ARGS=\"--config %s\"' >> /etc/default/%s" % (TEST_CONFIG, AGENT))
        try:
            service(run, "restart")
            uid = wait_for("the agent process", lambda: agent_uid(run), timeout=60)
            self.assertNotRegex(uid, r"^Uid:\s+0\s", "the agent runs as root")
            wait_for("a message in " + MESSAGES,
                     lambda: (run("grep -q Heartbeat %s" % MESSAGES)[0] == 0, run("ls -l %s" % STATE_DIR)[1]),
                     timeout=120)
            for message in json_lines(check(run, "cat " + MESSAGES)):
                self.assertIn("Events", message)
        finally:
            run("mv /tmp/%s.default /etc/default/%s" % (AGENT, AGENT))
            run("rm -f %s %s" % (TEST_CONFIG, MESSAGES))
            service(run, "restart")

    @OETestDepends(["defender_iot.DefenderIotAgentTest.test_installed_as_packaged"])
    @OEHasPackage(["defender-iot-micro-agent"])
    def test_bad_config_is_refused_with_one_line(self):
        run = self.run_cmd
        check(run, "echo '{\"Agent_LogLevel\": \"loud\"}' > /tmp/bad.json && chmod 0600 /tmp/bad.json")
        status, output = run(AGENT + " --check-config --config /tmp/bad.json")
        run("rm -f /tmp/bad.json")
        self.assertEqual(status, 2, output)
        self.assertIn("Agent_LogLevel", output)
