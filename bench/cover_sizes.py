"""How many hosts a cluster-wide read's covering set needs (docs/cluster.md "Covering set"):
a simulation of the token allocation of docs/cluster.md "The ring" and of the replica walk,
for rings of `--nodes` hosts at `--rf` whose nodes joined one after another. The first node
takes `num_tokens` evenly spaced tokens from a random offset; each later node, token by
token, takes the best of 16 random points in the middle halves of the four largest ranges
(the one after which the replicated shares are closest to even, `scored`, the allocation since
session 43) or a random point in the middle half of the largest range (`unscored`, before).
For each `num_tokens` and allocation, over `--rings` rings and a random coordinator each: the
share of coordinators whose smallest cover has 1, 2, 3... hosts and 0, 1, 2... hosts other
than the coordinator (its calls per round), the same for the hosts taken
in preference order (this node, then the others in a random latency order) while each
replicates a range not yet covered (the rule before session 43), and the worst ratio of the
largest replicated share to the smallest.

Usage: python3 bench/cover_sizes.py [--nodes 5] [--rf 3] [--tokens 1,2,4,8,16] [--rings 300]
"""
import argparse
import itertools
import json
import random

RING = 2**64


def gaps(tokens):
    ordered = sorted(tokens)
    return sorted((((t - ordered[i - 1][0]) % RING or RING, ordered[i - 1][0])
                   for i, (t, _) in enumerate(ordered)), reverse=True)


def shares(tokens, rf):
    owned = {}
    for (start, _), (end, _), replicas in zip([tokens[-1]] + tokens[:-1], tokens,
                                             replica_sets(tokens, rf)):
        for host in replicas:
            owned[host] = owned.get(host, 0) + ((end - start) % RING or RING)
    return owned


def allocate(num_tokens, nodes, rf, scored, rng):
    offset = rng.randrange(RING)
    tokens = [((offset + k * RING // num_tokens) % RING, 0) for k in range(num_tokens)]
    for node in range(1, nodes):
        for _ in range(num_tokens):
            largest = gaps(tokens)[:4]
            best = None
            for candidate in range(16 if scored else 1):
                size, start = largest[candidate % len(largest)]
                quarter = size // 4
                token = (start + quarter + rng.randrange(2 * quarter)) % RING
                spread = 0
                if scored:
                    # Each host's share against an even one, the new host's scaled by the tokens
                    # it has so far (cluster/src/ring.rs, `Ring::allocate_tokens`).
                    owned = shares(sorted(tokens + [(token, node)]), rf)
                    even = sum(owned.values()) / len(owned)
                    progress = (sum(n == node for _, n in tokens) + 1) / num_tokens
                    spread = sum((share - (even * progress if host == node else even)) ** 2
                                 for host, share in owned.items())
                if best is None or spread < best[0]:
                    best = (spread, token)
            tokens.append((best[1], node))
            tokens.sort()
    return tokens


def replica_sets(tokens, rf):
    hosts = len({n for _, n in tokens})
    sets = []
    for i in range(len(tokens)):
        replicas, j = [], i
        while len(replicas) < min(rf, hosts):
            node = tokens[j % len(tokens)][1]
            if node not in replicas:
                replicas.append(node)
            j += 1
        sets.append(frozenset(replicas))
    return sets


def smallest(sets, local, nodes):
    """The smallest cover's size and how many of its hosts are not `local` (the calls of a
    round): of one size, the first set in preference order, `local` first."""
    others = [n for n in range(nodes) if n != local]
    for size in range(1, nodes + 1):
        for chosen in itertools.combinations([local] + others, size):
            if all(s & set(chosen) for s in sets):
                return size, size - (local in chosen)
    return nodes, nodes - 1


def in_preference_order(sets, local, nodes, rng):
    order = [local] + rng.sample([n for n in range(nodes) if n != local], nodes - 1)
    chosen, open_ranges = 0, list(sets)
    for host in order:
        if any(host in s for s in open_ranges):
            chosen += 1
            open_ranges = [s for s in open_ranges if host not in s]
        if not open_ranges:
            break
    return chosen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--tokens", default="1,2,4,8,16")
    parser.add_argument("--rings", type=int, default=300)
    parser.add_argument("--seed", type=int, default=43)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    share = lambda sizes: {s: round(sizes.count(s) / len(sizes), 3) for s in sorted(set(sizes))}
    for num_tokens in [int(t) for t in args.tokens.split(",")]:
        for scored in (True, False):
            least, remote, ordered, spreads = [], [], [], []
            for _ in range(args.rings):
                tokens = allocate(num_tokens, args.nodes, args.rf, scored, rng)
                sets = replica_sets(tokens, args.rf)
                local = rng.randrange(args.nodes)
                size, calls = smallest(sets, local, args.nodes)
                least.append(size)
                remote.append(calls)
                ordered.append(in_preference_order(sets, local, args.nodes, rng))
                owned = shares(tokens, args.rf)
                spreads.append(max(owned.values()) / min(owned.values()))
            print(json.dumps({"nodes": args.nodes, "rf": args.rf, "num_tokens": num_tokens,
                              "allocation": "scored" if scored else "unscored",
                              "smallest_cover_hosts": share(least),
                              "smallest_cover_other_hosts": share(remote),
                              "preference_order_hosts": share(ordered),
                              "worst_share_spread": round(max(spreads), 2)}))


if __name__ == "__main__":
    main()
