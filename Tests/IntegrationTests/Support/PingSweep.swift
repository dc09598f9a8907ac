// Echo requests of every size through the lab: a python3 program with a raw ICMP socket
// (sixteen requests in flight, each tried up to three times), so sweeping 64...9000 bytes
// takes seconds, not one ping process per size.

import VRouterTestSupport

extension Lab {
    /// Pings `address` from namespace `ns` once per IP packet size in `sizes`, with DF set
    /// (IP_PMTUDISC_PROBE: the path's answer every time, not the route's learned MTU) or
    /// clear (the pod's kernel fragments above its MTU). Returns the outcome of each size
    /// in runs, one line each: "64-1450 reply", "1451-1500 frag-needed:1450" (the MTU the
    /// error names), "1501-9000 local:EMSGSIZE" (the pod's kernel refused), "none".
    func pingSweep(
        from ns: String,
        _ address: String,
        sizes: ClosedRange<Int>,
        dontFragment: Bool
    ) throws
        -> [String]
    {
        let r = try run(
            inNS(
                ns,
                [
                    "/usr/bin/python3", "-c", pingSweepProgram, address, "\(sizes.lowerBound)",
                    "\(sizes.upperBound)", dontFragment ? "1" : "0",
                ]
            ),
            timeout: 150
        )
        guard r.ok else { throw Failure("ping sweep failed (\(r.status)): \(r.error)") }
        return r.output.split(separator: "\n").map(String.init)
    }
}

private let pingSweepProgram = """
    import os, select, socket, struct, sys, time
    dst, first, last, df = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.IPPROTO_IP, 10, 3 if df else 0)  # IP_MTU_DISCOVER: PROBE or DONT
    s.setblocking(False)
    ident = os.getpid() & 0xFFFF
    def csum(b):
        b += b"\\0" * (len(b) % 2)
        t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while t >> 16: t = (t & 0xFFFF) + (t >> 16)
        return ~t & 0xFFFF
    def echo(size):
        body = bytes((size + i) & 0xFF for i in range(size - 28))
        h = struct.pack("!BBHHH", 8, 0, 0, ident, size)
        return struct.pack("!BBHHH", 8, 0, csum(h + body), ident, size) + body
    result, sent, tries, todo = {}, {}, {}, list(range(first, last + 1))
    deadline = time.time() + 120
    while (todo or sent) and time.time() < deadline:
        while todo and len(sent) < 16:
            size = todo.pop(0)
            try:
                s.sendto(echo(size), (dst, 0))
                sent[size] = time.time()
            except OSError as e:
                result[size] = "local:EMSGSIZE" if e.errno == 90 else "local:" + os.strerror(e.errno)
        select.select([s], [], [], 0.05)
        while True:
            try:
                pkt = s.recv(65535)
            except BlockingIOError:
                break
            ihl = (pkt[0] & 15) * 4
            kind, code = pkt[ihl], pkt[ihl + 1]
            if kind == 0 and struct.unpack("!H", pkt[ihl + 4:ihl + 6])[0] == ident:
                size = struct.unpack("!H", pkt[ihl + 6:ihl + 8])[0]
                result[size] = "reply" if pkt[ihl + 8:] == echo(size)[8:] and len(pkt) == size else "bad-reply"
                sent.pop(size, None)
            elif kind == 3 and code == 4:
                q = ihl + 8
                qe = q + (pkt[q] & 15) * 4
                if struct.unpack("!H", pkt[qe + 4:qe + 6])[0] == ident:
                    size = struct.unpack("!H", pkt[qe + 6:qe + 8])[0]
                    result[size] = "frag-needed:%d" % struct.unpack("!H", pkt[ihl + 6:ihl + 8])[0]
                    sent.pop(size, None)
        now = time.time()
        for size in [k for k, at in sent.items() if now - at > 1]:
            # Tried three times (a fragment lost on a loaded machine) before "none".
            del sent[size]
            tries[size] = tries.get(size, 0) + 1
            if tries[size] < 3:
                todo.insert(0, size)
            else:
                result[size] = "none"
    run = None
    for size in range(first, last + 1):
        o = result.get(size, "none")
        if run and run[2] == o:
            run[1] = size
        else:
            if run: print("%d-%d %s" % tuple(run))
            run = [size, size, o]
    print("%d-%d %s" % tuple(run))
    """
