"""Zone transfers with TSIG (RFC 8945), checked by dig: it signs the
request and verifies every signed message of the answer."""
import base64
import re
import shutil
import subprocess

import pytest

from conftest import Node

APEX = "idnode.internal."
SECRET = base64.b64encode(b"a shared secret for the transfer test").decode()


@pytest.fixture(scope="module")
def signed_node(tmp_path_factory):
    d = tmp_path_factory.mktemp("tsig")
    config = d / "idnode.toml"
    config.write_text(f'[dns]\nallow_transfer = ["127.0.0.1"]\n'
                      f'[[dns.tsig_keys]]\nname = "xfr-key."\nalgorithm = "hmac-sha256"\n'
                      f'secret = "{SECRET}"\n')
    n = Node(d / "data", extra=["--no-quic", "--config", str(config)]).start()
    yield n
    n.stop()


def axfr(node, *key):
    assert shutil.which("dig"), "dig is missing: run scripts/setup.sh (package bind9-dnsutils)"
    addr = node.dns_tcp
    cmd = ["dig", f"@{addr[0]}", "-p", str(addr[1]), "+time=10", "+tries=1", *key, "AXFR", APEX]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout


def test_a_signed_transfer_is_answered_and_verified(signed_node):
    out = axfr(signed_node, "-y", f"hmac-sha256:xfr-key.:{SECRET}")
    assert "Transfer failed" not in out and "verify" not in out.lower(), out[-2000:]
    records = [l.split() for l in out.splitlines() if l and not l.startswith(";")]
    # SOA first and last, the seeded identifiers between, over several
    # messages, each signed (dig verifies them all and shows the last TSIG).
    assert records[0][3] == "SOA" and records[-2][3] == "SOA", (records[0], records[-2])
    assert sum(r[3] == "TXT" for r in records if len(r) > 3) > 1000
    assert records[-1][3] == "TSIG" and "NOERROR" in records[-1], records[-1]
    messages = int(re.search(r"XFR size: \d+ records \(messages (\d+)", out).group(1))
    assert messages > 1, out[-300:]


def test_unsigned_or_wrongly_signed_transfers_are_refused(signed_node):
    out = axfr(signed_node)
    assert "Transfer failed" in out or "REFUSED" in out, out[-1000:]
    assert " TXT " not in out.replace("\t", " ")
    wrong = base64.b64encode(b"not the secret").decode()
    out = axfr(signed_node, "-y", f"hmac-sha256:xfr-key.:{wrong}")
    assert " TXT " not in out.replace("\t", " "), out[-1000:]
    assert "BADSIG" in out or "NOTAUTH" in out or "Transfer failed" in out, out[-1000:]
    out = axfr(signed_node, "-y", f"hmac-sha256:other-key.:{SECRET}")
    assert " TXT " not in out.replace("\t", " ")
    assert "BADKEY" in out or "NOTAUTH" in out or "Transfer failed" in out, out[-1000:]
