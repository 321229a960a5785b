#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the repository's test
vectors (hex files with `#` comments): every Handle message vector seeds
handle_message, every value vector handle_values, and the demo
identifiers seed identifiers, and DNS queries for the demo identifier's
names seed dns_query. Run from anywhere; writes fuzz/corpus/."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
VECTORS = ROOT / "crates/handle/tests/vectors"
CORPUS = ROOT / "fuzz/corpus"


def unhex(path):
    digits = "".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex("".join(digits.split()))


def dns_query(ident, name, qtype, edns):
    """A DNS query message: one question, and an OPT record when `edns`."""
    header = ident.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01\x00\x00\x00\x00"
    header += b"\x00\x01" if edns else b"\x00\x00"
    qname = b"".join(len(l).to_bytes(1, "big") + l.encode() for l in name.rstrip(".").split("."))
    question = qname + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" if edns else b""
    return header + question + opt


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
    dns = CORPUS / "dns_query"
    dns.mkdir(parents=True, exist_ok=True)
    names = ["ABC-123._.1.100.88.idnode.internal.", "MISSING._.1.100.88.idnode.internal.",
             "idnode.internal.", "x.example."]
    n = 0
    for name in names:
        for qtype in (16, 256, 35, 6, 2, 255, 252, 251):
            for edns in (False, True):
                (dns / f"query-{n}").write_bytes(dns_query(n, name, qtype, edns))
                n += 1
    counts["dns_query"] = n
    jsonl = CORPUS / "jsonl_line"
    jsonl.mkdir(parents=True, exist_ok=True)
    extra = [
        '{"identifier": "88.100.1/B", "values": [{"index": 8, "type": "blob", "data_base64": "AAEC",'
        ' "ttl_absolute": 1900000000, "references": [{"identifier": "88.100.1/A", "index": 1}]}],'
        ' "overwrite": true}',
        "# a comment", "",
    ]
    for i, line in enumerate(lines[:30] + extra):
        (jsonl / f"seed-{i}").write_text(line)
    counts["jsonl_line"] = 30 + len(extra)
    http = CORPUS / "http_target"
    http.mkdir(parents=True, exist_ok=True)
    targets = ["/88.100.1/CNC-LATHE-202600000?noredirect", "/88.100.1/A%20B?index=1&type=URL",
               "/?id=88.100.1/ABC", "/favicon.ico", "/88.100.1/%E4%B8%AD?index=2,3&publicOnly=no",
               "/88.100.1/ABC?type=URL&index=x&overwrite=false"]
    for i, t in enumerate(targets):
        (http / f"seed-{i}").write_text(t)
    counts["http_target"] = len(targets)
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
