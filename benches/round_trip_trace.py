#!/usr/bin/env python3
"""Takes the durable round trips of `benches/examples/round_trips.rs` apart, from the
kernel's trace of them.

    perf record -o rt.data -a -e 'sched:sched_switch,sched:sched_wakeup,syscalls:sys_enter_fsync,syscalls:sys_exit_fsync,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_exit_epoll_wait' \
        target/release/examples/round_trips plain 3000
    perf script -i rt.data -F comm,tid,cpu,time,event,trace > rt.txt
    python3 benches/round_trip_trace.py rt.txt

The threads are told apart by what they do: the two event loops send frames (`sendto`),
bob's the longer ones (his lines), alice's the shorter (her acks); a storage thread is the
one named `storage` that wakes a loop; the typist is the thread that wakes bob's loop with a
write and sends nothing. A round trip starts when the typist writes (the line typed) and
ends at its next write (it was told the line was delivered). Prints the median, 10th and
90th percentile of each stretch in µs, over the round trips after the first 1,000.
"""

import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def events(path):
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, tid, _cpu, t, event, rest = m.groups()
                yield float(t) * 1e6, comm, int(tid), event, rest


def main():
    evs = list(events(sys.argv[1]))
    sends = defaultdict(list)
    program = {}
    for _t, comm, tid, ev, rest in evs:
        if ev == "syscalls:sys_enter_sendto" and comm not in ("storage", "perf"):
            sends[tid].append(int(re.search(r"len: (0x[0-9a-f]+)", rest).group(1), 16))
            program[tid] = comm
    loops = sorted(sends, key=lambda t: len(sends[t]), reverse=True)[:2]
    if len(loops) < 2:
        sys.exit("no two event loops sending in this trace")
    median = lambda v: sorted(v)[len(v) // 2]
    bob, alice = sorted(loops, key=lambda t: median(sends[t]), reverse=True)
    line_len = Counter(sends[bob]).most_common(1)[0][0]
    ack_len = Counter(sends[alice]).most_common(1)[0][0]
    storage = {}
    writers = Counter()
    for _t, comm, tid, ev, rest in evs:
        if comm == "storage" and ev == "sched:sched_wakeup":
            woken = int(re.search(r"pid=(\d+)", rest).group(1))
            if woken == bob:
                storage["bob"] = tid
            elif woken == alice:
                storage["alice"] = tid
        if ev == "syscalls:sys_enter_write" and comm == program[bob] and tid not in loops:
            writers[tid] += 1
    typist = writers.most_common(1)[0][0]
    print(f"bob's loop {bob} (lines of {line_len} bytes), alice's loop {alice} (acks of "
          f"{ack_len}), storage threads {storage}, typist {typist}")

    trips, cur = [], None
    for t, _comm, tid, ev, rest in evs:
        if tid == typist and ev == "syscalls:sys_enter_write":
            if cur and "ack_in" in cur:
                cur["end"] = t
                trips.append(cur)
            cur = {"typed": t}
            continue
        if cur is None:
            continue
        step = None
        if tid == bob and ev == "syscalls:sys_enter_sendto" and f"len: {line_len:#010x}" in rest:
            step = ("line_out", None)
        elif tid == alice and ev == "syscalls:sys_exit_epoll_wait":
            step = ("line_in", "line_out")
        elif tid == storage.get("alice") and ev == "syscalls:sys_enter_fsync":
            step = ("a_sync", "line_in")
        elif tid == storage.get("alice") and ev == "syscalls:sys_exit_fsync":
            step = ("a_synced", "a_sync")
        elif tid == alice and ev == "syscalls:sys_enter_sendto" and f"len: {ack_len:#010x}" in rest:
            step = ("ack_out", "a_synced")
        elif tid == bob and ev == "syscalls:sys_exit_epoll_wait":
            step = ("ack_in", "ack_out")
        elif tid == storage.get("bob") and ev == "syscalls:sys_enter_fsync":
            step = ("b_sync", None)
        elif tid == storage.get("bob") and ev == "syscalls:sys_exit_fsync":
            step = ("b_synced", "b_sync")
        if step and step[0] not in cur and (step[1] is None or step[1] in cur):
            cur[step[0]] = t
    keys = ("line_out", "line_in", "a_sync", "a_synced", "ack_out", "ack_in", "b_sync", "b_synced")
    trips = [x for x in trips if all(k in x for k in keys)][1000:]
    print(f"{len(trips)} round trips after the first 1,000")
    stretches = [
        ("bob: typed -> the line on the wire", "typed", "line_out"),
        ("the line across the cores, to alice's loop", "line_out", "line_in"),
        ("alice: loop -> her fsync starts", "line_in", "a_sync"),
        ("alice's fsync", "a_sync", "a_synced"),
        ("alice: fsync done -> the ack on the wire", "a_synced", "ack_out"),
        ("the ack across the cores, to bob's loop", "ack_out", "ack_in"),
        ("bob: the ack in -> the typist told", "ack_in", "end"),
        ("the whole round trip", "typed", "end"),
        ("bob's own fsync", "b_sync", "b_synced"),
        ("bob's fsync starts after his line left", "line_out", "b_sync"),
        ("alice's fsync ends after bob's", "b_synced", "a_synced"),
    ]
    for name, a, b in stretches:
        v = sorted(x[b] - x[a] for x in trips)
        if v:
            p = lambda q: v[min(len(v) - 1, int(len(v) * q))]
            print(f"{name:48s} p50 {p(0.5):6.0f}  p10 {p(0.1):6.0f}  p90 {p(0.9):6.0f}")


if __name__ == "__main__":
    main()
