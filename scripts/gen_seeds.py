#!/usr/bin/env python3
"""Writes seeds/: the demo hierarchy an empty node starts with.

Run once by a developer; its output is committed so that a user can read
what a new node holds. Deterministic: the same output every run.
"""
import json
import random
from datetime import date, timedelta
from pathlib import Path

rng = random.Random(88100)
out = Path(__file__).resolve().parent.parent / "seeds"
out.mkdir(exist_ok=True)

enterprises = {
    "88.100.1": ("Huaxin Precision Machinery Co., Ltd.", "hxpm.example.com",
                 ["CNC-LATHE", "SPINDLE", "SERVO-MOTOR", "BALL-SCREW", "LINEAR-GUIDE"]),
    "88.100.2": ("Jiangnan Bearing Works", "jnbearing.example.com",
                 ["BRG-6204", "BRG-6305", "BRG-NU210", "BRG-32208"]),
    "88.200.7": ("Lingang Battery Technology", "lgbattery.example.com",
                 ["CELL-LFP280", "CELL-NCM50", "PACK-48V", "BMS-16S"]),
}
prefixes = ["88", "88.100", "88.200"] + list(enterprises)
(out / "prefixes.txt").write_text(
    "# Prefixes homed on a new node, one a line, parents first.\n" + "\n".join(prefixes) + "\n")

lines = []
start = date(2026, 1, 5)
per = [400, 300, 300]
for (prefix, (maker, host, models)), count in zip(enterprises.items(), per):
    for n in range(count):
        model = models[n % len(models)]
        serial = f"{model}-{2026}{n // len(models):05d}"
        made = start + timedelta(days=rng.randrange(0, 300))
        batch = f"B{made.strftime('%y%m%d')}-{rng.randrange(1, 40):02d}"
        values = [
            {"index": 1, "type": "URL", "data": f"https://{host}/products/{serial}"},
            {"index": 2, "type": "productName", "data": f"{model.replace('-', ' ').title()} {n % 7 + 1}00 series"},
            {"index": 3, "type": "manufacturer", "data": maker},
            {"index": 4, "type": "batch", "data": batch},
            {"index": 5, "type": "productionDate", "data": made.isoformat()},
        ]
        if n % 10 == 0:
            values.append({"index": 6, "type": "EMAIL", "data": f"quality@{host}"})
        if n % 25 == 0:
            # An internal value: stored, never sent to unauthenticated clients.
            values.append({"index": 7, "type": "costPrice", "data": f"{rng.randrange(100, 9000)}.00 CNY",
                           "permissions": 12})
        lines.append(json.dumps({"identifier": f"{prefix}/{serial}", "values": values},
                                ensure_ascii=False))
(out / "identifiers.jsonl").write_text("\n".join(lines) + "\n")
print(f"wrote {len(prefixes)} prefixes and {len(lines)} identifiers to {out}")
