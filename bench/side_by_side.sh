#!/usr/bin/env bash
# Two versions of medallion side by side in one sitting: generate a source once, then for each
# of PAIRS pairs run OLD then NEW, each in a fresh home copied from that source, through the
# stages full run, run with no change, 1 % change batch, incremental run, run with no change
# again; wall seconds and peak RSS of every stage from /usr/bin/time. Alternating the two
# versions lets them share whatever else the machine is doing, so compare the median ratios.
#
#   bench/side_by_side.sh OLD_MEDALLION NEW_MEDALLION SCALE PAIRS OUT
#   e.g. git worktree add ../old <rev> && make -C ../old .venv/.installed
#        bench/side_by_side.sh ../old/.venv/bin/medallion .venv/bin/medallion 1 3 /tmp/sbs
#
# A source already in OUT/source/source.db is used as it is (generating scale 10 takes minutes).
# OUT/<old|new>-<i>/summary holds "stage seconds max_rss_kib" lines; the medians are printed.
set -euo pipefail
OLD=$1 NEW=$2 SCALE=$3 PAIRS=$4 OUT=$5
STAGES=(full nochange change incr nochange2)
ORDERS=$(python3 -c "print(max(1, round(99441 * $SCALE / 100)))")
MOVES=$(python3 -c "print(max(1, $ORDERS // 10))")

sitting() {  # sitting MEDALLION DIR
  local m=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir/home" && cp "$OUT/source/source.db" "$dir/home/source.db"
  for stage in "${STAGES[@]}"; do
    local args=(run)
    if [ "$stage" = change ]; then
      args=(source change --new-orders "$ORDERS" --status-updates "$ORDERS" --customer-moves "$MOVES")
    fi
    /usr/bin/time -f "%e %M" -o "$dir/$stage.time" "$m" "${args[@]}" --home "$dir/home" \
      > "$dir/$stage.log" 2>&1 || { echo "$stage failed: $dir/$stage.log" >&2; exit 1; }
    echo "$stage $(tail -n 1 "$dir/$stage.time")" >> "$dir/summary"
  done
}

mkdir -p "$OUT"
if [ ! -f "$OUT/source/source.db" ]; then  # a source generated before is used again
  "$NEW" source generate --scale "$SCALE" --home "$OUT/source" > "$OUT/generate.log" 2>&1
fi
for i in $(seq 1 "$PAIRS"); do
  sitting "$OLD" "$OUT/old-$i"
  sitting "$NEW" "$OUT/new-$i"
done
python3 - "$OUT" "$PAIRS" "${STAGES[@]}" <<'PY'
import statistics, sys
out, pairs, stages = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def medians(side):
    rows = [dict((l.split()[0], l.split()[1:]) for l in open(f"{out}/{side}-{i}/summary"))
            for i in range(1, pairs + 1)]
    return {s: (statistics.median(float(r[s][0]) for r in rows),
                statistics.median(int(r[s][1]) for r in rows) / 1024) for s in stages}
old, new = medians("old"), medians("new")
print(f"{'stage':<10} {'old s':>8} {'new s':>8} {'new/old':>8} {'old MiB':>8} {'new MiB':>8}")
for s in stages:
    print(f"{s:<10} {old[s][0]:8.2f} {new[s][0]:8.2f} {new[s][0] / old[s][0]:8.2f} "
          f"{old[s][1]:8.0f} {new[s][1]:8.0f}")
PY
