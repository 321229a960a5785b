#!/usr/bin/env python3
"""Writes N identifiers of three values each as the JSONL that `idnode
import` reads, spread over P prefixes, for the import row of run.sh.

Written apart from the node's own generator (`idnode bench load`), as a
manufacturer's export would be: a URL, an e-mail address and a product
name per identifier, suffixes with a serial number and a random part.

Usage: benches/gen-identifiers.py COUNT PREFIXES OUT.jsonl
The prefixes are printed on stdout, one a line (to home them first).
"""
import json
import random
import sys


def prefix_of(k):
    return f"88.{100 + k // 10}.{k % 10 + 1}"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip())
    count, prefixes, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if count < 1 or prefixes < 1:
        sys.exit("COUNT and PREFIXES are positive whole numbers")
    rng = random.Random(7)
    with open(out, "w") as f:
        for i in range(count):
            ident = f"{prefix_of(i % prefixes)}/P{i:08d}-{rng.randrange(1 << 30):x}"
            values = [
                {"index": 1, "type": "URL", "data": f"https://products.example.com/item/{i}"},
                {"index": 2, "type": "EMAIL", "data": f"support{i % 97}@example.com"},
                {"index": 100, "type": "productName",
                 "data": f"Widget model {i % 5000} batch {rng.randrange(100000)}"},
            ]
            f.write(json.dumps({"identifier": ident, "values": values}) + "\n")
    for k in range(prefixes):
        print(prefix_of(k))


if __name__ == "__main__":
    main()
