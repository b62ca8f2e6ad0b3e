#!/bin/sh
# vmvault backup extension. vmvault installs and upgrades this file through
# the QEMU guest agent; do not edit it here: an upgrade replaces it.
#
#   vmvault-ext version                 print the extension's version
#   vmvault-ext pre  <snapshot>         run /etc/vmvault/pre.d/* in order
#   vmvault-ext post <snapshot> <cons>  run /etc/vmvault/post.d/* in order
#   vmvault-ext watchdog <id> <secs> [post]
#                                       thaw every file system after secs
#                                       unless disarmed first (then, with
#                                       post, run the post-scripts); armed
#                                       once /run/vmvault/freeze holds <id>
#   vmvault-ext disarm <id>             disarm; prints "fired" if too late
#
# Scripts are executable files in the folders above, run in the C locale's
# name order, each with a time limit (VMVAULT_SCRIPT_TIMEOUT seconds,
# default 60), with VMVAULT_PHASE, VMVAULT_SNAPSHOT and (post)
# VMVAULT_CONSISTENCY set. Pre-scripts stop at the first failure; exit
# codes: 0 all succeeded, 3 there were none, 1 one failed or timed out.
# Post-scripts all run. One line per script tells what happened.
VERSION=2
PRE=/etc/vmvault/pre.d
POST=/etc/vmvault/post.d
STATE=/run/vmvault
TIMEOUT=${VMVAULT_SCRIPT_TIMEOUT:-60}
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

scripts() { # dir phase snapshot consistency
	dir=$1 phase=$2 ran=0 failed=0
	mkdir -p "$STATE"
	for s in "$dir"/*; do
		[ -f "$s" ] && [ -x "$s" ] || continue
		name=${s##*/}
		case $name in *~ | *.dpkg-* | .*) continue ;; esac
		ran=$((ran + 1))
		VMVAULT_PHASE=$phase VMVAULT_SNAPSHOT=$3 VMVAULT_CONSISTENCY=$4 \
			timeout -k 5 "$TIMEOUT" "$s" </dev/null >"$STATE/$phase.out" 2>&1
		rc=$?
		if [ "$rc" -eq 0 ]; then
			echo "ok $name"
			continue
		fi
		failed=$((failed + 1))
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			echo "timeout $name after ${TIMEOUT}s"
		else
			echo "fail $name exit $rc: $(tail -c 200 "$STATE/$phase.out" | tr '\n' ' ')"
		fi
		[ "$phase" = pre ] && break
	done
	[ "$failed" -gt 0 ] && return 1
	[ "$ran" -eq 0 ] && return 3
	return 0
}

thaw_all() {
	awk '$1 ~ /^\/dev\// { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
		fsfreeze -u "$(printf '%b' "$m")" 2>/dev/null
	done
}

case $1 in
version) echo "$VERSION" ;;
pre) scripts "$PRE" pre "$2" "" ;;
post) scripts "$POST" post "$2" "$3" ;;
watchdog)
	mkdir -p "$STATE" || exit 1
	sleep "$3" &
	sleeper=$!
	# Read now what the thaw runs, so that it is cached before any freeze;
	# then say armed: the host freezes only after it reads this.
	cat /proc/self/mounts | awk '{ print $2 }' | sort -r >/dev/null
	fsfreeze --help >/dev/null 2>&1
	echo "$2" >"$STATE/freeze" || exit 1
	wait "$sleeper"
	[ "$(cat "$STATE/freeze" 2>/dev/null)" = "$2" ] || exit 0
	thaw_all
	echo "$2" >"$STATE/fired"
	# The host is gone or late: what its pre-scripts paused is resumed here.
	[ "$4" = post ] && scripts "$POST" post "$2" crash-consistent >"$STATE/watchdog-post.log" 2>&1
	echo "vmvault-ext: froze longer than $3s: thawed" >/dev/kmsg 2>/dev/null
	;;
disarm)
	if [ "$(cat "$STATE/freeze" 2>/dev/null)" = "$2" ]; then rm -f "$STATE/freeze"; fi
	if [ "$(cat "$STATE/fired" 2>/dev/null)" = "$2" ]; then
		rm -f "$STATE/fired"
		echo fired
	else
		echo disarmed
	fi
	;;
*)
	echo "usage: vmvault-ext version|pre|post|watchdog|disarm" >&2
	exit 2
	;;
esac
