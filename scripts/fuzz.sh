#!/usr/bin/env bash
# Fuzz every parser that takes outside input with libFuzzer (clang, ASan,
# UBSan). Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 60 s, every target; 0: only the regression inputs). First every
# target runs once over tests/fuzz/regressions/<target>/ (inputs that
# crashed, leaked or exhausted memory before a fix). Seeds: the test fixtures
# plus tests/fuzz/seeds/<target>/; the growing corpus and any crash-*
# reproducer are kept in build/fuzz/work/<target>/. Exits non-zero on the
# first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true

cmake -S agent -B build/fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DAGENT_FUZZ=ON -DAGENT_WERROR=OFF -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
if ! cmake --build build/fuzz --parallel "$(nproc)" >build/fuzz/build.log 2>&1; then
  grep -E 'error|FAILED' build/fuzz/build.log | head -20; echo "fuzz: build failed (build/fuzz/build.log)" >&2; exit 1
fi

fx=tests/fixtures
seed_files() {  # the fixture files that seed a target
  case "$1" in
    syslog) ls $fx/*/var/log/messages ;;
    authlog) ls $fx/*/var/log/auth.log ;;
    wtmp) ls $fx/*/var/log/wtmp ;;
    btmp) ls $fx/*/var/log/btmp ;;
    proc_net_tcp|proc_net_tcp6|proc_net_udp|proc_net_raw|proc_net_snmp)
      ls $fx/*/proc/net/"${1#proc_net_}" 2>/dev/null ;;
    proc_pid_stat|proc_pid_status|proc_pid_cmdline) ls $fx/*/proc/[0-9]*/"${1#proc_pid_}" 2>/dev/null | head -20 ;;
    os_release) ls $fx/*/etc/os-release ;;
    passwd|shadow) ls $fx/*/etc/"$1" 2>/dev/null ;;
    sshd_config) ls $fx/*/etc/ssh/sshd_config 2>/dev/null ;;
    mounts) ls $fx/*/proc/mounts 2>/dev/null ;;
    sysinfo_json) ls $fx/*/etc/defender-iot/sysinfo.json ;;
    policy) ls $fx/policies/*.policy ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd build/fuzz/fuzz && ls fuzz_* | grep -v '\.' | sed 's/^fuzz_//' | sort)
fi
for t in "${targets[@]}"; do
  reg=tests/fuzz/regressions/$t
  if [ -d "$reg" ] && ! build/fuzz/fuzz/fuzz_"$t" -runs=0 -timeout=10 -rss_limit_mb=512 "$reg" >build/fuzz/regression-"$t".log 2>&1; then
    tail -30 build/fuzz/regression-"$t".log
    echo "fuzz_$t: a regression input of $reg fails again (build/fuzz/regression-$t.log)" >&2
    exit 1
  fi
done
[ "$seconds" = 0 ] && { echo "fuzz: regression inputs pass"; exit 0; }
for t in "${targets[@]}"; do
  work=build/fuzz/work/$t
  mkdir -p "$work/corpus"
  for f in $(seed_files "$t") tests/fuzz/seeds/"$t"/*; do
    [ -f "$f" ] && cp "$f" "$work/corpus/$(sha1sum "$f" | cut -c1-16)"
  done
  echo "fuzz_$t: ${seconds}s"
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 "../../fuzz/fuzz_$t" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 corpus >log.txt 2>&1); then
    tail -40 "$work/log.txt"
    echo "fuzz_$t: FINDING (reproducer: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null | head -1))" >&2
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|cov:' "$work/log.txt" | tail -2 | tr '\n' ' '; echo
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no finding"
