"""Hit ratios of cache eviction policies at one capacity, on token streams.

    .venv/bin/python bench/cache_sim.py                       # all streams, capacity 1000
    .venv/bin/python bench/cache_sim.py --capacity 4096
    .venv/bin/python bench/cache_sim.py --stream build/bench/zipf-10000-s1.0-400000.txt

Why: `make bench`'s mix cells compare mpass-guard's token cache with Envoy
jwt_authn's (`SimpleLRUCache`, `jwt_cache_size`) at the same capacity on a
Zipf stream of users. A cache hit costs ~1 % of a miss (an RS256 verify), so
per request cost is about the miss ratio times the cold cost: the policy's hit
ratio at equal capacity is the lever. This script replays streams through
each policy, counting entries only (every token costs about the same bytes).

Policies (each as published; `src/cache.rs` implements the chosen one):
- LRU: what jwt_authn and the old `cache::Lru` do.
- FIFO, CLOCK (second chance): the simple baselines.
- SIEVE (Zhang et al., NSDI '24): one FIFO queue, a visited bit set on a hit,
  a hand that walks from the tail, clears visited bits and evicts the first
  unvisited entry; new entries at the head.
- S3-FIFO (Yang et al., SOSP '23): a small FIFO (10 %) for new entries, a
  main FIFO (90 %) and a ghost FIFO of evicted keys (as many as the main
  queue). A hit adds one to a 2-bit frequency. A key found in the ghost goes
  straight to main; the small queue's tail moves to main if it was hit
  (`s3fifo` needs one hit, `s3fifo-2` two, as the paper's Algorithm 1;
  `s3fifo-f1` / `-f2` remember at most one / two hits instead of three),
  otherwise its key goes to the ghost; main's tail is reinserted with
  frequency - 1 while it is non-zero.
- W-TinyLFU (Einziger et al., Caffeine): a 1 % LRU window, a segmented LRU
  main (80 % protected), admission by a count-min sketch (4-bit, 4 rows,
  halved every 10 x capacity accesses, with a doorkeeper).
- OPT (Belady): the offline optimum, for the bound.

Streams (indices of tokens; each stream is deterministic):
- bench: the stream `make bench` replays (`build/bench/zipf-*.txt`,
  regenerated here with bench/run.py's seed if missing); the bench warms up
  from its start and measures from its middle, so the ratio is over the
  second half.
- zipf-0.8 / zipf-1.2: the same 10,000 users with another exponent.
- zipf+scan: the bench's Zipf with a burst of 5,000 tokens seen once each
  every 50,000 requests (a batch job, a crawler with fresh logins).
- zipf+one-hit: 30 % of requests carry a token never seen again.
- loop-1200: 1,200 tokens in a cycle (larger than the cache: LRU's worst).
- shifting: Zipf s = 1 whose popular users change every 50,000 requests.
- sessions: logins arrive, each token makes a burst of requests with
  exponential gaps, about 3,000 sessions live at once (recency matters).
- uniform-2000: every one of 2,000 tokens equally likely.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from collections import OrderedDict, deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_STREAM = REPO / "build" / "bench" / "zipf-10000-s1.0-400000.txt"


# --------------------------------------------------------------------------
# policies: each has access(key) -> bool (hit), inserting on a miss
# --------------------------------------------------------------------------


class LRU:
    def __init__(self, cap: int) -> None:
        self.cap, self.d = cap, OrderedDict()

    def access(self, k) -> bool:
        d = self.d
        if k in d:
            d.move_to_end(k)
            return True
        if len(d) >= self.cap:
            d.popitem(last=False)
        d[k] = None
        return False


class FIFO:
    def __init__(self, cap: int) -> None:
        self.cap, self.q, self.s = cap, deque(), set()

    def access(self, k) -> bool:
        if k in self.s:
            return True
        if len(self.s) >= self.cap:
            self.s.discard(self.q.popleft())
        self.q.append(k)
        self.s.add(k)
        return False


class CLOCK:
    def __init__(self, cap: int) -> None:
        self.cap, self.q, self.ref = cap, deque(), {}

    def access(self, k) -> bool:
        ref = self.ref
        if k in ref:
            ref[k] = True
            return True
        while len(ref) >= self.cap:
            t = self.q.popleft()
            if ref[t]:
                ref[t] = False
                self.q.append(t)
            else:
                del ref[t]
        self.q.append(k)
        ref[k] = False
        return False


class SIEVE:
    """Doubly linked list in dicts; head = newest; the hand walks tail -> head."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.visited: dict = {}
        self.prev: dict = {}  # towards the tail (older)
        self.next: dict = {}  # towards the head (newer)
        self.head = self.tail = self.hand = None

    def access(self, k) -> bool:
        if k in self.visited:
            self.visited[k] = True
            return True
        if len(self.visited) >= self.cap:
            self._evict()
        # push at head
        self.visited[k] = False
        self.prev[k], self.next[k] = self.head, None
        if self.head is not None:
            self.next[self.head] = k
        self.head = k
        if self.tail is None:
            self.tail = k
        return False

    def _evict(self) -> None:
        o = self.hand if self.hand is not None else self.tail
        while self.visited[o]:
            self.visited[o] = False
            o = self.next[o]
            if o is None:
                o = self.tail
        self.hand = self.next[o]
        p, n = self.prev.pop(o), self.next.pop(o)
        del self.visited[o]
        if p is None:
            self.tail = n
        else:
            self.next[p] = n
        if n is None:
            self.head = p
        else:
            self.prev[n] = p


class S3FIFO:
    def __init__(self, cap: int, threshold: int = 1, max_freq: int = 3) -> None:
        self.cap = cap
        self.threshold = threshold
        self.max_freq = max_freq
        self.freq: dict = {}
        self.s: deque = deque()
        self.m: deque = deque()
        # As src/cache.rs's Ghost: a ring of (key, seq), a key counting
        # while its newest slot is in the ring and it was not taken.
        self.ring: deque = deque()
        self.latest: dict = {}
        self.seq = 0
        self.n_s = self.n_m = 0

    def access(self, k) -> bool:
        if k in self.freq:
            f = self.freq[k]
            if f < self.max_freq:
                self.freq[k] = f + 1
            return True
        while self.n_s + self.n_m >= self.cap:
            self._evict()
        self.freq[k] = 0
        if self.latest.pop(k, None) is not None:
            self.m.append(k)
            self.n_m += 1
        else:
            self.s.append(k)
            self.n_s += 1
        return False

    def _evict(self) -> None:
        """One eviction, as `S3Fifo::evict_one` in src/cache.rs does it."""
        while True:
            n = self.n_s + self.n_m
            if self.n_s and (self.n_s * 10 >= n or not self.n_m):
                t = self.s.popleft()
                self.n_s -= 1
                if self.freq[t] >= self.threshold:
                    self.freq[t] = 0
                    self.m.append(t)
                    self.n_m += 1
                    continue
                del self.freq[t]
                self.seq += 1
                self.latest[t] = self.seq
                self.ring.append((t, self.seq))
                while len(self.ring) > n - n // 10:
                    g, q = self.ring.popleft()
                    if self.latest.get(g) == q:
                        del self.latest[g]
                return
            t = self.m.popleft()
            f = self.freq[t]
            if f > 0:
                self.freq[t] = f - 1
                self.m.append(t)
                continue
            self.n_m -= 1
            del self.freq[t]
            return


class WTinyLFU:
    def __init__(self, cap: int, seed: int = 7) -> None:
        self.window_cap = max(1, cap // 100)
        main = cap - self.window_cap
        self.prot_cap = int(main * 0.8)
        self.prob_cap = main - self.prot_cap
        self.window: OrderedDict = OrderedDict()
        self.probation: OrderedDict = OrderedDict()
        self.protected: OrderedDict = OrderedDict()
        w = 1
        while w < cap:
            w <<= 1
        self.width = w * 4
        self.rows = [[0] * self.width for _ in range(4)]
        rng = random.Random(seed)
        self.salts = [rng.getrandbits(61) | 1 for _ in range(4)]
        self.door: set = set()
        self.samples = 0
        self.sample_cap = 10 * cap

    def _idx(self, k, i):
        return ((hash(k) ^ self.salts[i]) * 0x9E3779B97F4A7C15 >> 17) % self.width

    def _incr(self, k) -> None:
        if k not in self.door:
            self.door.add(k)
        else:
            for i in range(4):
                j = self._idx(k, i)
                if self.rows[i][j] < 15:
                    self.rows[i][j] += 1
        self.samples += 1
        if self.samples >= self.sample_cap:
            self.samples //= 2
            self.door.clear()
            for r in self.rows:
                for j in range(len(r)):
                    r[j] >>= 1

    def _freq(self, k) -> int:
        f = min(self.rows[i][self._idx(k, i)] for i in range(4))
        return f + (1 if k in self.door else 0)

    def access(self, k) -> bool:
        self._incr(k)
        if k in self.window:
            self.window.move_to_end(k)
            return True
        if k in self.protected:
            self.protected.move_to_end(k)
            return True
        if k in self.probation:
            del self.probation[k]
            self.protected[k] = None
            if len(self.protected) > self.prot_cap:
                d, _ = self.protected.popitem(last=False)
                self.probation[d] = None
            return True
        self.window[k] = None
        if len(self.window) > self.window_cap:
            cand, _ = self.window.popitem(last=False)
            if len(self.probation) + len(self.protected) < self.prob_cap + self.prot_cap:
                self.probation[cand] = None
            else:
                victim = next(iter(self.probation)) if self.probation else next(iter(self.protected))
                if self._freq(cand) > self._freq(victim):
                    (self.probation if victim in self.probation else self.protected).pop(victim)
                    self.probation[cand] = None
        return False


def opt_hits(stream: list, cap: int, start: int) -> int:
    """Belady: evict the entry whose next use is farthest."""
    n = len(stream)
    nxt = [0] * n
    last: dict = {}
    for i in range(n - 1, -1, -1):
        nxt[i] = last.get(stream[i], n + i)
        last[stream[i]] = i
    cached: dict = {}  # key -> next use
    heap: list = []  # (-next use, key)
    hits = 0
    for i, k in enumerate(stream):
        if k in cached:
            if i >= start:
                hits += 1
        else:
            if len(cached) >= cap:
                while True:
                    nu, v = heapq.heappop(heap)
                    if cached.get(v) == -nu:
                        del cached[v]
                        break
        cached[k] = nxt[i]
        heapq.heappush(heap, (-nxt[i], k))
    return hits


POLICIES = {
    "lru": LRU,
    "fifo": FIFO,
    "clock": CLOCK,
    "sieve": SIEVE,
    "s3fifo": lambda c: S3FIFO(c, threshold=1),
    "s3fifo-2": lambda c: S3FIFO(c, threshold=2),
    "s3fifo-f1": lambda c: S3FIFO(c, max_freq=1),
    "s3fifo-f2": lambda c: S3FIFO(c, max_freq=2),
    "w-tinylfu": WTinyLFU,
}


# --------------------------------------------------------------------------
# streams: (list of keys, index from which hits are counted)
# --------------------------------------------------------------------------


def zipf(users: int, s: float, n: int, seed: int) -> list:
    """bench/run.py's generator (`ensure_zipf`)."""
    rng = random.Random(seed)
    order = list(range(users))
    rng.shuffle(order)
    weights = [1.0 / (r + 1) ** s for r in range(users)]
    ranks = rng.choices(range(users), weights=weights, k=n)
    return [order[r] for r in ranks]


def bench_stream(path: Path | None) -> list:
    if path and path.exists():
        return [int(x) for x in path.read_text().split()]
    return zipf(10_000, 1.0, 400_000, 20261126)


def streams(args) -> dict:
    n = args.length
    out = {}
    b = bench_stream(Path(args.stream) if args.stream else BENCH_STREAM)
    out["bench (zipf 1.0)"] = (b, len(b) // 2)
    if args.only_bench:
        return out
    out["zipf-0.8"] = (zipf(10_000, 0.8, n, 1), n // 2)
    out["zipf-1.2"] = (zipf(10_000, 1.2, n, 2), n // 2)

    base = zipf(10_000, 1.0, n, 3)
    scan, fresh = [], 10_000_000
    for i, k in enumerate(base):
        if i % 50_000 == 25_000:
            scan.extend(range(fresh, fresh + 5_000))
            fresh += 5_000
        scan.append(k)
    out["zipf+scan"] = (scan, len(scan) // 2)

    rng = random.Random(4)
    onehit, fresh = [], 20_000_000
    for k in zipf(10_000, 1.0, n, 5):
        if rng.random() < 0.3:
            onehit.append(fresh)
            fresh += 1
        onehit.append(k)
    out["zipf+one-hit"] = (onehit, len(onehit) // 2)

    out["loop-1200"] = ([i % 1200 for i in range(n)], n // 2)

    shifting = []
    rng = random.Random(6)
    weights = [1.0 / (r + 1) for r in range(10_000)]
    for phase in range(n // 50_000):
        order = list(range(phase * 10_000, phase * 10_000 + 10_000))
        rng.shuffle(order)
        shifting.extend(order[r] for r in rng.choices(range(10_000), weights=weights, k=50_000))
    out["shifting"] = (shifting, len(shifting) // 2)

    # Sessions: a new token every ~1/rate requests; each makes a geometric
    # number of requests (mean 20) at exponential gaps in "request time".
    rng = random.Random(7)
    events: list = []
    t, tok = 0.0, 30_000_000
    while t < n:
        t += rng.expovariate(1 / 20)  # one new session per 20 requests
        at = t
        for _ in range(1 + int(rng.expovariate(1 / 19))):
            events.append((at, tok))
            at += rng.expovariate(1 / 3_000)  # ~3,000 sessions interleave
        tok += 1
    events.sort()
    sess = [k for _, k in events[:n]]
    out["sessions"] = (sess, len(sess) // 2)

    rng = random.Random(8)
    out["uniform-2000"] = ([rng.randrange(2000) for _ in range(n)], n // 2)
    return out


def run(stream: list, start: int, policy) -> int:
    hits = 0
    access = policy.access
    for i, k in enumerate(stream):
        if access(k) and i >= start:
            hits += 1
    return hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capacity", type=int, default=1000)
    ap.add_argument("--length", type=int, default=400_000, help="length of the generated streams")
    ap.add_argument("--stream", help="the bench stream (default build/bench/zipf-10000-s1.0-400000.txt)")
    ap.add_argument("--only-bench", action="store_true")
    ap.add_argument("--policies", default=",".join(POLICIES) + ",opt")
    ap.add_argument("--json", help="also write the table as JSON here")
    args = ap.parse_args()
    names = args.policies.split(",")
    table: dict = {}
    print(f"capacity {args.capacity}; hit ratio (%) over each stream's second half")
    print(f"{'stream':<18}" + "".join(f"{p:>11}" for p in names))
    for sname, (stream, start) in streams(args).items():
        row = {}
        counted = len(stream) - start
        for p in names:
            if p == "opt":
                h = opt_hits(stream, args.capacity, start)
            else:
                h = run(stream, start, POLICIES[p](args.capacity))
            row[p] = 100.0 * h / counted
        table[sname] = row
        print(f"{sname:<18}" + "".join(f"{row[p]:>11.2f}" for p in names), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"capacity": args.capacity, "hit_ratio_pct": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
