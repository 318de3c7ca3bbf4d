#!/bin/sh
# t/fuzz/run-fuzzers.sh - runs each libFuzzer target for a bounded time and
# prints TAP: one test per target, passed when it ran FUZZ_SECONDS (default
# 60) without a crash, a failed check, a leak or a timeout.
#
# Needs a build configured with CC=clang --enable-fuzzers; tools/quickstart
# test makes one in build-fuzz/ and runs this there when clang is present.
# Each target starts from its corpus in the source tree (read-only here)
# and any crash inputs kept in t/fuzz/crashes-NAME; what it finds new goes
# to t/fuzz/work-NAME in the build tree. An input that fails is written to
# t/fuzz/artifacts/ and shown in base64: keep it in t/fuzz/crashes-NAME/
# once fixed, and every `make check` replays it.
set -u

srcdir=${srcdir:-.}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"stream jid sasl conf proxy mamtext"}

n=0
failed=0
for t in $targets; do
	n=$((n + 1))
done
echo "1..$n"

i=0
mkdir -p t/fuzz/artifacts
for t in $targets; do
	i=$((i + 1))
	bin=t/fuzz/fuzz-$t
	if [ ! -x "$bin" ]; then
		echo "not ok $i - fuzz-$t is built (configure CC=clang --enable-fuzzers)"
		failed=$((failed + 1))
		continue
	fi
	work=t/fuzz/work-$t
	mkdir -p "$work"
	seeds="$srcdir/t/fuzz/corpus-$t"
	[ -d "$srcdir/t/fuzz/crashes-$t" ] && seeds="$seeds $srcdir/t/fuzz/crashes-$t"
	log=t/fuzz/fuzz-$t.out
	rm -f t/fuzz/artifacts/"$t"-*
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix=t/fuzz/artifacts/"$t"- -print_final_stats=1 \
		"$work" $seeds > "$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ "$rc" = 0 ] && ! ls t/fuzz/artifacts/"$t"-* >/dev/null 2>&1; then
		echo "ok $i - fuzz-$t: ${runs:-?} runs in ${seconds} s, ${cov:-cov: ?}, nothing found"
	else
		echo "not ok $i - fuzz-$t: exit status $rc after ${runs:-?} runs"
		failed=$((failed + 1))
		sed -e 's/^/# /' "$log" | grep -v '^# #[0-9]' | tail -n 60
		for a in t/fuzz/artifacts/"$t"-*; do
			[ -f "$a" ] || continue
			echo "# $a, base64 (save it as t/fuzz/crashes-$t/NAME):"
			base64 "$a" | sed -e 's/^/#   /'
		done
	fi
done
[ "$failed" = 0 ]
