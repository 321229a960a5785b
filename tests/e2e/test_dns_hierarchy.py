"""End-to-end: a delegated prefix is a zone cut in the DNS
(docs/dns-mapping.md, "Zone cuts: delegated prefixes").

A top-level node homes `88` and delegates `88.100` to an enterprise node;
each serves the DNS on port 53 of its own loopback address, as referrals
require (the glue is an address; the port is 53). unbound (not ours), an
iterative resolver with a stub zone for the apex at the top node, follows
the referral and gets the enterprise's TXT record. The top node, asked
directly, answers with the referral itself: NS at the cut and glue, AA
clear."""
import os
import shutil
import socket
import subprocess
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import Node

APEX = "idnode.internal."
TOP_IP, ENTERPRISE_IP, UNBOUND_IP = "127.0.0.31", "127.0.0.32", "127.0.0.33"
CUT = "100.88." + APEX
IDENTIFIER = "88.100/PUMP-7"
OWNER = "PUMP-7._." + CUT
URL = "https://enterprise.example/pump-7"


class ListenNode(Node):
    """A Node whose listen addresses are replaced (`{"--dns-listen":
    "127.0.0.31:53", ...}`): clap refuses a flag given twice, and Node
    passes its own loopback defaults."""

    def __init__(self, data_dir, listen, extra=(), demo=True):
        super().__init__(data_dir, extra=extra, demo=demo)
        self.listen = dict(listen)

    def start(self, timeout=120):
        real = subprocess.Popen

        def popen(cmd, *args, **kwargs):
            cmd = list(cmd)
            for flag, value in self.listen.items():
                cmd[cmd.index(flag) + 1] = value
            return real(cmd, *args, **kwargs)

        subprocess.Popen = popen
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = real


def can_bind(ip, port):
    """Whether UDP and TCP `ip:port` can be bound now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(ip):
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        port = s.getsockname()[1]
        s.close()
        if can_bind(ip, port):
            return port
    raise RuntimeError(f"no free port on {ip}")


def ensure_unbound():
    """The unbound binary, installed from the Debian packages if missing;
    None when that fails."""
    found = shutil.which("unbound") or shutil.which("unbound", path="/usr/sbin")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "unbound"],
                       capture_output=True, timeout=600, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("unbound") or shutil.which("unbound", path="/usr/sbin")


def ask(server, name, rdtype, port=53, tcp=False):
    q = dns.message.make_query(name, rdtype)
    q.flags &= ~dns.flags.RD
    if tcp:
        return dns.query.tcp(q, server, port=port, timeout=5)
    return dns.query.udp(q, server, port=port, timeout=5)


@pytest.fixture
def hierarchy(tmp_path):
    for ip in (TOP_IP, ENTERPRISE_IP):
        if not can_bind(ip, 53):
            pytest.skip(f"cannot bind UDP and TCP {ip}:53 (needs root, and the port free)")
    nodes = []
    try:
        enterprise = ListenNode(tmp_path / "enterprise", {
            "--handle-listen": f"{ENTERPRISE_IP}:0",
            "--dns-listen": f"{ENTERPRISE_IP}:53",
        }, demo=False, extra=["--no-quic"]).start()
        nodes.append(enterprise)
        top = ListenNode(tmp_path / "top", {
            "--handle-listen": f"{TOP_IP}:0",
            "--dns-listen": f"{TOP_IP}:53",
        }, demo=False, extra=["--no-quic"]).start()
        nodes.append(top)
        assert enterprise.dns_udp == (ENTERPRISE_IP, 53) and top.dns_udp == (TOP_IP, 53)
        assert enterprise.udp[0] == ENTERPRISE_IP
        enterprise.cli("prefix", "home", "88.100")
        enterprise.cli("id", "create", IDENTIFIER, "-v", f"1:URL:{URL}",
                       "-v", "2:productName:Pump 7")
        top.cli("prefix", "home", "88")
        to = "udp://%s:%d,tcp://%s:%d" % (*enterprise.udp, *enterprise.tcp)
        top.cli("prefix", "delegate", "88.100", "--to", to, "--ttl", "300")
        yield top, enterprise
    finally:
        for n in nodes:
            n.stop()


def test_the_top_node_refers_to_the_enterprise(hierarchy):
    top, enterprise = hierarchy
    for name in (OWNER, CUT, "X._." + CUT, "5." + CUT):
        for tcp in (False, True):
            r = ask(TOP_IP, name, "TXT", tcp=tcp)
            assert r.rcode() == dns.rcode.NOERROR, r
            assert not r.flags & dns.flags.AA, r
            assert not r.answer, r
            ns = [rrset for rrset in r.authority if rrset.rdtype == dns.rdatatype.NS]
            assert len(ns) == 1 and ns[0].name == dns.name.from_text(CUT), r
            assert ns[0].ttl == 300
            hosts = [rd.target for rd in ns[0]]
            assert len(hosts) == 1 and hosts[0].is_subdomain(dns.name.from_text(CUT))
            glue = [rrset for rrset in r.additional if rrset.rdtype == dns.rdatatype.A]
            assert len(glue) == 1 and glue[0].name == hosts[0], r
            assert [rd.address for rd in glue[0]] == [ENTERPRISE_IP]
    # NS at the cut: the referral too (the parent is not authoritative).
    r = ask(TOP_IP, CUT, "NS")
    assert not r.flags & dns.flags.AA and not r.answer and r.authority, r
    # Above the cut the top node answers itself.
    r = ask(TOP_IP, "88." + APEX, "TXT")
    assert r.flags & dns.flags.AA and r.rcode() == dns.rcode.NOERROR, r
    # The enterprise answers the identifier with authority.
    r = ask(ENTERPRISE_IP, OWNER, "TXT")
    assert r.flags & dns.flags.AA and r.rcode() == dns.rcode.NOERROR, r
    texts = sorted([s.decode() for s in rd.strings] for rrset in r.answer for rd in rrset)
    assert ["idx=1", "type=URL", f"data={URL}"] in texts


def test_unbound_follows_the_referral(hierarchy, tmp_path):
    unbound = ensure_unbound()
    if not unbound:
        pytest.skip("unbound is not installed and `apt-get install unbound` failed")
    port = free_port(UNBOUND_IP)
    d = tmp_path / "unbound"
    d.mkdir()
    conf = d / "unbound.conf"
    conf.write_text(f"""server:
    interface: {UNBOUND_IP}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    pidfile: ""
    directory: "{d}"
    logfile: ""
    use-syslog: no
    verbosity: 1
    do-ip6: no
    do-not-query-localhost: no
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    domain-insecure: "{APEX}"
    local-zone: "{APEX}" nodefault
    num-threads: 1
    so-reuseport: no

stub-zone:
    name: "{APEX}"
    stub-addr: {TOP_IP}@53
""")
    checkconf = shutil.which("unbound-checkconf", path=os.path.dirname(unbound))
    if checkconf:
        check = subprocess.run([checkconf, str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    log = open(d / "unbound.out", "w")
    proc = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                q = dns.message.make_query(APEX, "SOA")
                dns.query.udp(q, UNBOUND_IP, port=port, timeout=1)
                break
            except (OSError, dns.exception.Timeout):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise AssertionError("unbound did not start: "
                                         + (d / "unbound.out").read_text())
                time.sleep(0.2)
        q = dns.message.make_query(OWNER, "TXT")
        r = dns.query.udp(q, UNBOUND_IP, port=port, timeout=10)
        assert r.rcode() == dns.rcode.NOERROR, r
        texts = sorted([s.decode() for s in rd.strings] for rrset in r.answer for rd in rrset)
        assert ["idx=1", "type=URL", f"data={URL}"] in texts, r
        assert ["idx=2", "type=productName", "data=Pump 7"] in texts, r
        # URI and NAPTR through the same referral; a missing identifier
        # under the cut is the enterprise's NXDOMAIN.
        r = dns.query.udp(dns.message.make_query(OWNER, "NAPTR"), UNBOUND_IP, port=port,
                          timeout=10)
        assert r.rcode() == dns.rcode.NOERROR and r.answer, r
        assert URL in r.answer[0].to_text()
        r = dns.query.udp(dns.message.make_query("NOPE._." + CUT, "TXT"), UNBOUND_IP,
                          port=port, timeout=10)
        assert r.rcode() == dns.rcode.NXDOMAIN, r
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
