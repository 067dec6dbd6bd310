"""The agent on a booted image, attacked for real, reporting to the
emulated hub. One guest per architecture for the whole module; the tests
run in this order (the outage last: it stops the hub)."""

from __future__ import annotations

import pytest

from defender_iot.image import scenarios

pytestmark = pytest.mark.qemu


def test_agent_connects_and_reports_heartbeat_and_system_information(testbed):
    got = scenarios.connects_and_reports(testbed)
    assert scenarios.payload(got["SystemInformation"]).get("Hostname") == f"dfi-{testbed.arch}"


def test_posture_report_then_runtime_hardening_passes(testbed):
    before = scenarios.baseline_results(testbed)
    after = scenarios.posture_then_hardening(testbed)
    assert all(after[i] == "Pass" for i in scenarios.HARDENING if before.get(i) == "Fail")


def test_ssh_brute_force_then_success(testbed):
    bf, ok = scenarios.brute_force(testbed)
    assert scenarios.payload(ok)["Severity"] in ("High", "Critical")


def test_crypto_miner(testbed):
    scenarios.crypto_miner(testbed)


def test_botnet(testbed):
    scenarios.botnet(testbed)


def test_reverse_shell(testbed):
    scenarios.reverse_shell(testbed)


def test_unexpected_listening_port(testbed):
    scenarios.unexpected_listening_port(testbed)


def test_twin_patch_disables_a_collector_and_bad_patch_is_reported(testbed):
    scenarios.twin_disables_a_collector(testbed)


def test_hub_outage_loses_nothing(testbed):
    scenarios.outage(testbed)
