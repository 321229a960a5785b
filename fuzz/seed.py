#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the repository's test
vectors (hex files with `#` comments): every Handle message vector seeds
handle_message, every value vector handle_values, and the demo
identifiers seed identifiers. Run from anywhere; writes fuzz/corpus/."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
VECTORS = ROOT / "crates/handle/tests/vectors"
CORPUS = ROOT / "fuzz/corpus"


def unhex(path):
    digits = "".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex("".join(digits.split()))


def main():
    counts = {}
    for path in sorted(VECTORS.rglob("*.hex")):
        data = unhex(path)
        target = "handle_values" if path.name.startswith(("hs-", "site-")) else "handle_message"
        out = CORPUS / target / (path.parent.name + "-" + path.stem)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        counts[target] = counts.get(target, 0) + 1
    ids = CORPUS / "identifiers"
    ids.mkdir(parents=True, exist_ok=True)
    lines = (ROOT / "seeds/identifiers.jsonl").read_text().splitlines()
    for i, line in enumerate(lines[:50]):
        (ids / f"seed-{i}").write_text(json.loads(line)["identifier"])
    counts["identifiers"] = min(50, len(lines))
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
