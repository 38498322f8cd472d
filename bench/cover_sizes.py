"""How many hosts a cluster-wide read's covering set needs (docs/cluster.md "Covering set"):
a simulation of the token allocation of docs/cluster.md "The ring" (the first node's
`num_tokens` evenly spaced from a random offset; each later node, joining one after another,
splits the largest range at a random point of its middle half, token by token) and of the
replica walk, for rings of `--nodes` hosts at `--rf`. For each `num_tokens`, over `--rings`
rings and a random coordinator each: the share of coordinators whose smallest cover (this node
included when it helps) has 1, 2, 3... hosts, and the same for the hosts taken in preference
order (this node, then the others in a random latency order) while each replicates a range not
yet covered, the rule before session 43.

Usage: python3 bench/cover_sizes.py [--nodes 5] [--rf 3] [--tokens 1,2,4,8,16] [--rings 1000]
"""
import argparse
import itertools
import json
import random

RING = 2**64


def allocate(num_tokens, nodes, rng):
    offset = rng.randrange(RING)
    tokens = [((offset + k * RING // num_tokens) % RING, 0) for k in range(num_tokens)]
    for node in range(1, nodes):
        for _ in range(num_tokens):
            ordered = sorted(tokens)
            size, start = max(((t - ordered[i - 1][0]) % RING or RING, ordered[i - 1][0])
                              for i, (t, _) in enumerate(ordered))
            quarter = size // 4
            tokens.append(((start + quarter + rng.randrange(2 * quarter)) % RING, node))
    return sorted(tokens)


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
    others = [n for n in range(nodes) if n != local]
    for size in range(1, nodes + 1):
        for chosen in itertools.combinations([local] + others, size):
            if all(s & set(chosen) for s in sets):
                return size
    return nodes


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
    parser.add_argument("--rings", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=43)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for num_tokens in [int(t) for t in args.tokens.split(",")]:
        least, ordered = [], []
        for _ in range(args.rings):
            sets = replica_sets(allocate(num_tokens, args.nodes, rng), args.rf)
            local = rng.randrange(args.nodes)
            least.append(smallest(sets, local, args.nodes))
            ordered.append(in_preference_order(sets, local, args.nodes, rng))
        share = lambda sizes: {s: round(sizes.count(s) / len(sizes), 3) for s in sorted(set(sizes))}
        print(json.dumps({"nodes": args.nodes, "rf": args.rf, "num_tokens": num_tokens,
                          "smallest_cover_hosts": share(least),
                          "preference_order_hosts": share(ordered)}))


if __name__ == "__main__":
    main()
