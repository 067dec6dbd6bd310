#!/usr/bin/env bash
# Runs every test: the agent's C unit tests (plain and under ASan/UBSan),
# then the pytest suite (agent builds, toolkit, hub, layer checks, QEMU).
# Extra arguments go to pytest (e.g. -k login, -m "not qemu").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)
echo "== C unit tests"
cmake -S agent -B build/ctest -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/ctest --parallel "$jobs"
ctest --test-dir build/ctest --output-on-failure

echo "== every feature built as Yocto and Buildroot build it (Release, -O2, fortified, link-time optimisation), -Werror"
# some warnings (-Wformat-truncation, -Wstringop-*) appear only when optimising
cmake -S agent -B build/o2 -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG -D_FORTIFY_SOURCE=2 -fstack-protector-strong" -DBUILD_TESTING=OFF >/dev/null
cmake --build build/o2 --parallel "$jobs"

echo "== C unit tests under valgrind (no leak, no invalid access)"
for t in build/ctest/tests/test_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=1 "$t" >/dev/null || { echo "valgrind: $t failed" >&2; exit 1; }
done
echo "valgrind: $(ls build/ctest/tests/test_* | grep -vc '\.') unit test programs clean"

echo "== C unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S agent -B build/ctest-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAGENT_SANITIZE=ON >/dev/null
cmake --build build/ctest-asan --parallel "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build/ctest-asan --output-on-failure

echo "== fuzzing: every parser of outside input, ${FUZZ_SECONDS:-5}s per target (scripts/fuzz.sh runs longer)"
scripts/fuzz.sh "${FUZZ_SECONDS:-5}"

echo "== pytest"
exec .venv/bin/pytest -ra "$@"
