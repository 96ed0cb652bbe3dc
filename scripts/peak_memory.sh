#!/usr/bin/env bash
# Run a command and print its peak memory, sampled from /proc every 0.2 s: anonymous memory
# (heap: what the process needs) and file-backed memory (mapped cache files such as the image
# stack: pages the kernel can drop and read again), and the kernel's own peak RSS (both).
#
#   scripts/peak_memory.sh <command...>
set -euo pipefail
"$@" &
pid=$!
anon=0; file=0
while kill -0 "$pid" 2>/dev/null; do
  if [ -r "/proc/$pid/status" ]; then
    a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    f=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
    [ -n "$f" ] && [ "$f" -gt "$file" ] && file=$f
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ -n "$hwm" ] && peak=$hwm
  fi
  sleep 0.2
done
wait "$pid"; rc=$?
printf 'exit %s; peak anonymous %.0f MB, peak file-backed %.0f MB, peak RSS %.0f MB\n' \
  "$rc" "$((anon / 1024))" "$((file / 1024))" "$((${peak:-0} / 1024))" >&2
exit "$rc"
