#!/usr/bin/env python3
"""peers.py: the special FastCGI clients of the engine measurements (issue 7).

Loopback TCP only; ADDR is HOST:PORT. "Answered" means served: END_REQUEST with
FCGI_REQUEST_COMPLETE and no 5xx Status header (a refusal, 503 + FCGI_OVERLOADED, is not). Every subcommand ends with one line on stdout,
"RESULT key=value ...", which benches/common.sh (peers_result) turns into R_key variables;
details go to stderr. Requests are FastCGI RESPONDER requests with a few CGI params; -p
NAME=VALUE adds params (SLEEP_MS and BODY_BYTES drive tests/c/engine_app.c and
examples/sleep.rs, which answer "pid=<pid>").

  burst ADDR -n N [-t SECS] [-p N=V]...
      N requests at once, each on a new connection (all connected first, then all sent
      together). RESULT answered, total, wall_s (until the last answer, or the timeout),
      pids (pid:count,...), counts (count/count/... in pid order), per_pid_min,
      per_pid_max, procs.
  probe ADDR -n N [-t SECS] [--budget SECS] [--stop-after K]
      N requests one after the other, each on a new connection. RESULT attempted, answered,
      p50_ms, p99_ms, max_ms (an unanswered request counts as infinitely slow: "inf").
  until ADDR [-t SECS] [--budget SECS]
      Requests one after the other until one is answered. RESULT first_ok_s (seconds from
      the start until an answer arrived, or "none"), tries.
  hold ADDR [--slow N] [--noread N] [--ka N] [--rcvbuf BYTES] [-p N=V]...
      Opens connections and holds them until killed: --slow sends the first 3 bytes of a
      request and stops; --noread sends a whole request and never reads (with -p params,
      e.g. BODY_BYTES); --ka sends a keep-alive request and reads its answer if one comes.
      --rcvbuf sets SO_RCVBUF before connecting (a peer that does not read then stops the
      server's writes early). Prints "RESULT ready=1 ..." once everything is sent.
  idle ADDR -n N --pid PID [--cycles C]
      N kept-alive connections, each after one answered request (FCGI_KEEP_CONN), held idle;
      reads VmRSS, Threads and open descriptors of PID before, after the first fill, and
      after C more close/fill cycles. RESULT n, answered_min, rss_before_kb, rss_first_kb,
      rss_last_kb, threads_before, threads_first, threads_last, fds_first, fds_last,
      rss_closed_kb (after the last close, before the last fill).
"""

import argparse
import math
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

BEGIN, END, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6
IP_BIND_ADDRESS_NO_PORT = 24  # Linux; lets many source addresses share the port range


def record(rtype, rid, content=b""):
    pad = (-len(content)) % 8
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), pad, 0) + content + b"\0" * pad


def nv_len(n):
    return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)


def request_bytes(params, keep=False, rid=1):
    body = b"".join(nv_len(len(k)) + nv_len(len(v)) + k + v for k, v in params)
    out = record(BEGIN, rid, struct.pack(">HB5x", 1, 1 if keep else 0))
    out += record(PARAMS, rid, body) + record(PARAMS, rid)
    return out + record(STDIN, rid)


def base_params(extra):
    params = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"REQUEST_METHOD", b"GET"),
        (b"SCRIPT_NAME", b"/engine"),
        (b"REQUEST_URI", b"/engine"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    ]
    for kv in extra or []:
        k, _, v = kv.partition("=")
        params.append((k.encode(), v.encode()))
    return params


class Response:
    """Records of one request, as they arrive."""

    def __init__(self):
        self.buf = b""
        self.stdout = bytearray()
        self.done = False
        self.protocol_status = None

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 8:
            _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", self.buf[:8])
            total = 8 + clen + plen
            if len(self.buf) < total:
                break
            if rtype == STDOUT:
                self.stdout += self.buf[8 : 8 + clen]
            elif rtype == END:
                self.done = True
                self.protocol_status = self.buf[12] if clen >= 5 else None
            self.buf = self.buf[total:]
        return self.done

    def status(self):
        """The HTTP status the application answered (its Status header, else 200)."""
        head = bytes(self.stdout).split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"status:"):
                return int(line.split()[1])
        return 200

    def ok(self):
        """Served: FCGI_REQUEST_COMPLETE and not an HTTP 5xx (a refusal is 503 and
        FCGI_OVERLOADED)."""
        return self.protocol_status == 0 and self.status() < 500

    def pid(self):
        body = bytes(self.stdout).split(b"\r\n\r\n", 1)[-1]
        line = body.split(b"\n", 1)[0]
        return line[4:].decode() if line.startswith(b"pid=") else "?"


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return (host.strip("[]"), int(port))


def one_request(addr, payload, timeout, sock=None):
    """(answered, seconds, Response or error text) for one request on a new connection."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    s = sock
    try:
        if s is None:
            s = socket.create_connection(addr, timeout=timeout)
        s.settimeout(max(0.001, deadline - time.monotonic()))
        s.sendall(payload)
        r = Response()
        while not r.done:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, time.monotonic() - t0, "timeout"
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                return False, time.monotonic() - t0, "connection closed before END_REQUEST"
            r.feed(data)
        if not r.ok():
            return False, time.monotonic() - t0, f"refused (FastCGI status {r.protocol_status}, HTTP {r.status()})"
        return True, time.monotonic() - t0, r
    except socket.timeout:
        return False, time.monotonic() - t0, "timeout"
    except OSError as e:
        return False, time.monotonic() - t0, str(e)
    finally:
        if s is not None:
            s.close()


def result(**kv):
    print("RESULT " + " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("inf")
    return sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)]


def fmt_ms(v):
    return "inf" if v == float("inf") else f"{v * 1000:.1f}"


def cmd_burst(a):
    addr = parse_addr(a.addr)
    payload = request_bytes(base_params(a.p))
    socks = [socket.create_connection(addr, timeout=a.t) for _ in range(a.n)]
    go = threading.Barrier(a.n + 1)
    out = [None] * a.n

    def run(i):
        go.wait()
        out[i] = one_request(addr, payload, a.t, socks[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.n)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    go.wait()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    pids = {}
    answered = 0
    last = 0.0
    for i, (ok, secs, r) in enumerate(out):
        if ok:
            answered += 1
            last = max(last, secs)
            pids[r.pid()] = pids.get(r.pid(), 0) + 1
            print(f"request {i}: {secs:.3f} s, pid {r.pid()}", file=sys.stderr)
        else:
            print(f"request {i}: not answered ({r}) after {secs:.3f} s", file=sys.stderr)
    counts = sorted(pids.values())
    result(
        answered=answered,
        total=a.n,
        wall_s=f"{(last if answered == a.n else wall):.2f}",
        pids=",".join(f"{p}:{c}" for p, c in sorted(pids.items())) or "none",
        counts="/".join(str(c) for _, c in sorted(pids.items())) or "0",
        procs=len(pids),
        per_pid_min=counts[0] if counts else 0,
        per_pid_max=counts[-1] if counts else 0,
    )


def cmd_probe(a):
    addr = parse_addr(a.addr)
    payload = request_bytes(base_params(a.p))
    end = time.monotonic() + a.budget
    lat = []
    attempted = answered = refused = fails_in_row = 0
    first_error = ""
    while attempted < a.n and time.monotonic() < end and fails_in_row < a.stop_after:
        ok, secs, r = one_request(addr, payload, a.t)
        attempted += 1
        if ok:
            answered += 1
            fails_in_row = 0
            lat.append(secs)
        else:
            fails_in_row += 1
            refused += r.startswith("refused")
            first_error = first_error or r
            lat.append(float("inf"))
        if a.interval:
            time.sleep(a.interval / 1000)
    lat.sort()
    print(f"probe: {answered}/{attempted} answered; first error: {first_error or '-'}", file=sys.stderr)
    result(
        attempted=attempted,
        answered=answered,
        refused=refused,
        p50_ms=fmt_ms(percentile(lat, 0.50)),
        p99_ms=fmt_ms(percentile(lat, 0.99)),
        max_ms=fmt_ms(lat[-1] if lat else float("inf")),
    )


def cmd_until(a):
    addr = parse_addr(a.addr)
    payload = request_bytes(base_params(a.p))
    t0 = time.monotonic()
    tries = 0
    while time.monotonic() - t0 < a.budget:
        tries += 1
        ok, _, r = one_request(addr, payload, a.t)
        if ok:
            result(first_ok_s=f"{time.monotonic() - t0:.2f}", tries=tries)
            return
        if r != "timeout":
            time.sleep(0.05)  # refused or reset: not at once again
    result(first_ok_s="none", tries=tries)


class Conn:
    __slots__ = ("sock", "out", "want", "resp", "state")


def open_many(addr, n, payload, want_response, timeout, rcvbuf=None, srcs=None, window=256, stall=5.0):
    """Opens n connections, sends payload on each and, if want_response, reads its answer.
    Gives up after timeout seconds, or after stall seconds without any connection moving on.
    Returns the Conn list (state: sent, answered, refused, failed, or where it was left)."""
    sel = selectors.DefaultSelector()
    conns = []
    active = 0
    deadline = time.monotonic() + timeout
    moved = time.monotonic()

    def finish(c, state):
        nonlocal active, moved
        sel.unregister(c.sock)
        c.state = state
        active -= 1
        moved = time.monotonic()

    while (len(conns) < n or active) and time.monotonic() < min(deadline, moved + stall):
        while len(conns) < n and active < window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if srcs:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((srcs[len(conns) % len(srcs)], 0))
            s.setblocking(False)
            c = Conn()
            c.sock, c.out, c.want, c.resp, c.state = s, payload, want_response, Response(), "connect"
            conns.append(c)
            s.connect_ex(addr)
            sel.register(s, selectors.EVENT_WRITE, c)
            active += 1
        for key, _ in sel.select(timeout=max(0.0, min(0.2, deadline - time.monotonic()))):
            c = key.data
            s = c.sock
            try:
                if c.state == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(c, "failed")
                        continue
                    c.state = "send"
                if c.state == "send":
                    sent = s.send(c.out)
                    c.out = c.out[sent:]
                    if not c.out:
                        if c.want:
                            c.state = "read"
                            sel.modify(s, selectors.EVENT_READ, c)
                        else:
                            finish(c, "sent")
                elif c.state == "read":
                    data = s.recv(65536)
                    if not data:
                        finish(c, "failed")
                    elif c.resp.feed(data):
                        finish(c, "answered" if c.resp.ok() else "refused")
            except BlockingIOError:
                pass
            except OSError:
                finish(c, "failed")
    for c in conns:
        if c.state in ("connect", "send", "read"):
            sel.unregister(c.sock)
    sel.close()
    return conns


def count(conns, *states):
    return sum(1 for c in conns if c.state in states)


def cmd_hold(a):
    addr = parse_addr(a.addr)
    held = []
    got = {}
    if a.slow:
        held += open_many(addr, a.slow, request_bytes(base_params(None))[:3], False, a.t, a.rcvbuf)
        got["slow_sent"] = count(held, "sent")
    if a.noread:
        conns = open_many(addr, a.noread, request_bytes(base_params(a.p)), False, a.t, a.rcvbuf)
        held += conns
        got["noread_sent"] = count(conns, "sent")
    if a.ka:
        # Answers that do not come within the timeout are not waited for (fd limit tests).
        conns = open_many(addr, a.ka, request_bytes(base_params(a.p), keep=True), True, a.t, a.rcvbuf)
        held += conns
        got["ka_answered"] = count(conns, "answered")
        got["ka_open"] = count(conns, "answered", "read", "send")
    result(ready=1, **got)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()[0] if v.split() else ""
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def cmd_idle(a):
    addr = parse_addr(a.addr)
    srcs = [f"127.0.0.{i}" for i in range(1, 9)] if addr[0].startswith("127.") else None
    payload = request_bytes(base_params(a.p), keep=True)
    before = proc_status(a.pid)
    print(f"before: {before['VmRSS']} kB, {before['Threads']} threads, {before['fds']} fds", file=sys.stderr)
    first = last = closed = None
    answered_min = a.n
    for cycle in range(a.cycles + 1):
        conns = open_many(addr, a.n, payload, True, a.t, srcs=srcs)
        answered = count(conns, "answered")
        answered_min = min(answered_min, answered)
        st = proc_status(a.pid)
        print(
            f"fill {cycle + 1}: {answered}/{a.n} answered; {st['VmRSS']} kB, "
            f"{st['Threads']} threads, {st['fds']} fds",
            file=sys.stderr,
        )
        if first is None:
            first = st
        last = st
        if cycle == a.cycles:
            break
        for c in conns:
            c.sock.close()
        # The server has seen every close once its descriptors are back to where they were.
        end = time.monotonic() + a.t
        while proc_status(a.pid)["fds"] > before["fds"] + 2 and time.monotonic() < end:
            time.sleep(0.05)
        closed = proc_status(a.pid)
    result(
        n=a.n,
        answered_min=answered_min,
        rss_before_kb=before["VmRSS"],
        rss_first_kb=first["VmRSS"],
        rss_last_kb=last["VmRSS"],
        rss_closed_kb=closed["VmRSS"] if closed else "-",
        threads_before=before["Threads"],
        threads_first=first["Threads"],
        threads_last=last["Threads"],
        fds_before=before["fds"],
        fds_first=first["fds"],
        fds_last=last["fds"],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, t):
        p.add_argument("addr")
        p.add_argument("-t", type=float, default=t, help="timeout per request (seconds)")
        p.add_argument("-p", action="append", metavar="NAME=VALUE", help="extra param")
        return p

    p = common(sub.add_parser("burst"), 10)
    p.add_argument("-n", type=int, default=16)
    p = common(sub.add_parser("probe"), 1)
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--budget", type=float, default=20)
    p.add_argument("--stop-after", type=int, default=5, help="consecutive failures")
    p.add_argument("--interval", type=float, default=0, help="ms between requests")
    p = common(sub.add_parser("until"), 1)
    p.add_argument("--budget", type=float, default=20)
    p = common(sub.add_parser("hold"), 20)
    p.add_argument("--slow", type=int, default=0)
    p.add_argument("--noread", type=int, default=0)
    p.add_argument("--ka", type=int, default=0)
    p.add_argument("--rcvbuf", type=int, default=0)
    p = common(sub.add_parser("idle"), 60)
    p.add_argument("-n", type=int, default=10000)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--cycles", type=int, default=0)
    a = ap.parse_args()
    {"burst": cmd_burst, "probe": cmd_probe, "until": cmd_until, "hold": cmd_hold, "idle": cmd_idle}[a.cmd](a)


if __name__ == "__main__":
    main()
