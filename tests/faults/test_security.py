"""Security: hostile header values stay inside OUT; no code path unpickles or evaluates untrusted input;
the Dask scheduler, its dashboard and the SAMP client stay on localhost; a TLS cluster works."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from lenghu.io.paths import safe_name
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night

from .helpers import REPO, DaskProcesses, content, products, raw_checksums, reduce_cli
from .reliability import counted

LOOPBACK = {"127.0.0.1", "::1"}

# ---------------------------------------------------------------- header values never reach paths

HOSTILE = {
    "parent folders": "../../x",
    "absolute path and shell characters": "/etc/passwd$(touch pwned); `id` | rm -rf ~",
    "600 characters after 40 parent folders": "../" * 40 + "L" * 600,
    "dots only": "..",
}
NUL_OBJECT = "a\x00b\x00../../y"

#: Two science exposures per hostile OBJECT (a coadd needs two), one CCD, no darks: one run covers them all.
SEC_NIGHT = NightConfig(scale="1/32", seed=11, n_bias=2, n_dark=0, n_flat=2, n_science=2 * len(HOSTILE),
                        filters=("r",), detectors=("CCD5",))
ALL_STAGES = ("ingest", "bias", "dark", "flat", "science", "measure", "coadd", "report")


def _set_object(path: Path, value: str) -> None:
    """Write ``value`` as OBJECT, NUL bytes included (astropy refuses them: patched in the bytes)."""
    placeholder = "Q" * max(1, len(value))
    with fits.open(path, mode="update") as hdul:
        for hdu in hdul:
            if "OBJECT" in hdu.header:
                hdu.header["OBJECT"] = placeholder if "\x00" in value else value
    if "\x00" in value:
        data = path.read_bytes()
        at = data.index(placeholder.encode())
        path.write_bytes(data[:at] + value.encode("latin-1") + data[at + len(placeholder):])


@pytest.fixture(scope="module")
def sec_night(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sec_night")
    simulate_night(SEC_NIGHT.with_changes(truth_images=False), root, progress=False)
    return root


def _hostile_run(sec_night: Path, tmp_path: Path, values: list[str]):
    """Reduce a copy of the night whose science frames carry ``values`` as OBJECT (in turn, two each)."""
    sandbox = tmp_path / "a" / "b" / "c"  # room for ../../ to land somewhere visible
    root = sandbox / "night"
    shutil.copytree(sec_night, root)
    raw = root / "raw"
    science = sorted(p for p in raw.glob("*.fits") if fits.getheader(p).get("IMAGETYP") == "object")
    for i, path in enumerate(science):
        _set_object(path, values[(i // 2) % len(values)])
    raw_before = raw_checksums(raw)
    before = set(tmp_path.rglob("*"))
    out = sandbox / "out"
    proc = reduce_cli(raw, out, "--instrument", "wfst", "--workers", "2", stages=ALL_STAGES)
    stdout, stderr = proc.communicate(timeout=300)
    created = set(tmp_path.rglob("*")) - before
    assert "Traceback" not in stderr, stderr
    escaped = [p for p in created if out not in p.parents and p != out]
    assert not escaped, f"written outside OUT: {escaped}"
    assert all(len(p.name.encode()) <= 255 and "\x00" not in p.name and p.name not in (".", "..")
               for p in created)
    assert raw_checksums(raw) == raw_before, "a raw file was modified"
    return proc, stdout, stderr, out, science, created


@pytest.mark.slow
@pytest.mark.reliability(kind="security", case="raw frames whose OBJECT is hostile (" + "; ".join(HOSTILE) + ") "
                                               "reduced through measurement, coadds (named after OBJECT) and the "
                                               "report", promise="every file written stays inside OUT with a safe "
                                                                 "name; raw files unchanged")
def test_hostile_object_names_stay_inside_out(sec_night, tmp_path, record_property):
    proc, stdout, stderr, out, science, created = _hostile_run(sec_night, tmp_path, list(HOSTILE.values()))
    assert proc.returncode == 0, stderr
    coadds = sorted((out / "coadds").glob("*.fits"))
    coadds = [p for p in coadds if not p.name.endswith(".weight.fits") and ".cat." not in p.name]
    names = sorted({p.name.split("_r_")[0] for p in coadds if "_r_" in p.name})
    assert len(names) == len(HOSTILE), f"one coadd per hostile OBJECT expected: {names}"
    for path in coadds:
        assert path.resolve().parent == (out / "coadds").resolve()
        assert ".." not in path.name and "/" not in path.name and len(path.name) <= 120
    record_property("data_lost", 0)
    record_property("observed", f"exit 0; {len(created)} files, all inside OUT; coadds named "
                                + ", ".join(n[:30] for n in names))


@pytest.mark.slow
@pytest.mark.reliability(kind="security", case="raw frames whose OBJECT holds NUL bytes and ../",
                         promise="the frames are refused by name (FITS headers are ASCII); nothing written "
                                 "outside OUT; raw files unchanged")
def test_an_object_with_nul_bytes_is_refused(sec_night, tmp_path, record_property):
    proc, stdout, stderr, out, science, created = _hostile_run(sec_night, tmp_path, [NUL_OBJECT])
    failed = [line for line in stdout.splitlines() if "FAILED frame" in line]
    assert proc.returncode == 3 and len(failed) == len(science), stdout
    assert all("UnreadableFileError" in line and "non-ASCII" in line for line in failed), failed
    assert all(any(p.name in line for line in failed) for p in science)
    record_property("data_lost", 0)
    record_property("observed", f"exit 3; {len(failed)} frames refused as 'non-ASCII byte', named; "
                                f"{len(created)} files written, all inside OUT")


@pytest.mark.reliability(kind="security", case="safe_name on arbitrary text (file names from header values)",
                         promise="a plain name of [A-Za-z0-9._-], at most 64 characters, never '.', '..' or "
                                 "hidden, that stays inside its folder")
@given(value=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.from_regex(r"[./\\\x00 ]{0,20}")))
@counted
def test_safe_name_of_any_text(value):
    name = safe_name(value)
    assert name and len(name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert not name.startswith(".") and ".." not in name
    folder = Path("/out/coadds")
    assert (folder / name).resolve().parent == folder


# ---------------------------------------------------------------- no pickle or eval of untrusted input

#: Calls that run code or rebuild objects from data (pickle, eval, shells) and must not appear in
#: lenghu's sources. (``__import__`` of a Qt binding chosen from a fixed table, as the viewer does,
#: imports code by name, not from data, and is allowed.) Dask's own wire protocol pickles; that is why the cluster stays on localhost
#: or uses TLS (see docs/security.md).
FORBIDDEN_CALLS = {"eval", "exec", "compile", "pickle.load", "pickle.loads", "cPickle.loads",
                   "marshal.loads", "marshal.load", "yaml.load", "yaml.unsafe_load", "os.system", "os.popen",
                   "dill.loads", "cloudpickle.loads", "shelve.open", "jsonpickle.decode"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                f"{func.value.id}.{func.attr}" if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else getattr(func, "attr", ""))
            yield node, name


@pytest.mark.reliability(kind="security", case="lenghu, pipelines and viewer sources scanned for pickle, eval, "
                                               "exec, yaml.load, os.system, shell=True, allow_pickle=True",
                         promise="none of them")
def test_no_code_path_unpickles_or_evaluates(record_property):
    found, files = [], 0
    for package in ("lenghu", "pipelines", "viewer"):
        for path in sorted((REPO / package).rglob("*.py")):
            files += 1
            tree = ast.parse(path.read_text(), filename=str(path))
            for node, name in _calls(tree):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                if name in FORBIDDEN_CALLS:
                    found.append(f"{where} {name}()")
                for kw in node.keywords:
                    if kw.arg in ("shell", "allow_pickle") and isinstance(kw.value, ast.Constant) and kw.value.value:
                        found.append(f"{where} {name}({kw.arg}=True)")
    record_property("observed", f"{files} files scanned; {len(found)} found")
    assert files > 50
    assert not found, found


# ---------------------------------------------------------------- the cluster binds to localhost


def _listening(pids: list[int]) -> list[tuple[int, str, int]]:
    import psutil

    found = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((pid, conn.laddr.ip, conn.laddr.port))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("processes", [
    pytest.param(p, marks=[pytest.mark.reliability(
        kind="security", case=f"the default local Dask cluster ({'worker processes' if p else 'threaded workers'}): "
                              "scheduler, workers and dashboard sockets",
        promise="every listening socket is on 127.0.0.1")]) for p in (True, False)])
def test_the_local_cluster_listens_only_on_localhost(processes, record_property):
    import psutil

    from lenghu.pipelines.cluster import dask_client
    from lenghu.pipelines.config import ReduceConfig

    me = os.getpid()
    before = {(ip, port) for _, ip, port in _listening([me])}
    execution = ReduceConfig().with_execution(workers=2, processes=processes, memory_limit="1GB").execution
    with dask_client(execution) as (client, info):
        pids = [me] + [p.pid for p in psutil.Process(me).children(recursive=True)]
        sockets = [s for s in _listening(pids) if (s[1], s[2]) not in before or s[0] != me]
        dashboard = info.dashboard
        address = info.address
    record_property("observed", f"scheduler {address}; dashboard {dashboard}; listening: "
                                + ", ".join(f"{ip}:{port}" for _, ip, port in sockets))
    assert sockets, "nothing listened: the check saw no sockets"
    assert {ip for _, ip, _ in sockets} <= LOOPBACK, sockets
    assert dashboard and "127.0.0.1" in dashboard
    if processes:
        assert address.startswith("tcp://127.0.0.1:")


# ---------------------------------------------------------------- TLS


@pytest.mark.slow
@pytest.mark.reliability(kind="security", case="a TLS cluster: `dask scheduler` and two workers with certificates; "
                                               "`lenghu reduce --scheduler tls://...`; a client without "
                                               "certificates", promise="the reduction runs over TLS with the "
                                                                        "same products; a client without the "
                                                                        "certificates is refused")
def test_reduce_through_a_tls_scheduler(night_root, reference, tmp_path, record_property):
    from distributed import Client
    from distributed.security import Security

    certs = tmp_path / "certs"
    certs.mkdir()
    security = Security.temporary()  # a fresh CA-signed key pair (needs `cryptography`)
    ca = certs / "ca.pem"
    ca.write_text(security.tls_ca_file)
    cert = certs / "cert.pem"
    cert.write_text(security.tls_scheduler_cert)
    key = certs / "key.pem"
    key.write_text(security.tls_scheduler_key)
    tls_args = ("--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key))
    file_security = Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                             require_encryption=True)
    raw = night_root / "raw"
    stages = ("ingest", "bias", "dark", "flat", "science")
    with DaskProcesses(tmp_path / "cluster", workers=2, extra_args=("--protocol", "tls", *tls_args),
                       security=file_security) as cluster:
        assert cluster.address.startswith("tls://127.0.0.1:"), cluster.address
        # the dask configuration (here from the environment) gives the client its certificates
        env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(ca), "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(cert),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(key),
               "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
        out = tmp_path / "out"
        proc = reduce_cli(raw, out, "--instrument", "wfst", "--scheduler", cluster.address, env=env, stages=stages)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        with pytest.raises((OSError, TimeoutError)):
            Client(cluster.address.replace("tls://", "tcp://"), timeout="3s")
        with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
            Client(cluster.address, timeout="3s", security=Security())  # no certificates
    ours, theirs = products(out, ("masters", "calibrated")), products(reference, ("masters", "calibrated"))
    assert sorted(ours) == sorted(theirs) and ours
    assert all(content(ours[n]) == content(theirs[n]) for n in ours)
    record_property("observed", f"scheduler at {cluster.address}; {len(ours)} masters and calibrated images, "
                                "identical to an undisturbed local run; "
                                "plain-TCP and certificate-less clients refused")
    record_property("data_lost", 0)


# ---------------------------------------------------------------- SAMP


@pytest.mark.reliability(kind="security", case="`lenghu samp send` to a running hub (astropy's, on localhost)",
                         promise="lenghu's client opens no listening socket; every socket involved is on "
                                 "127.0.0.1")
def test_the_samp_client_stays_on_localhost(real_data, tmp_path, monkeypatch, record_property):
    import time

    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient

    from lenghu.io.samp import hub_params_from_lockfile, send

    me = os.getpid()
    lock = tmp_path / "samp.lock"
    hub = SAMPHubServer(web_profile=False, lockfile=str(lock), addr="127.0.0.1")
    hub.start()
    received = []
    receiver = SAMPIntegratedClient(name="receiver", addr="127.0.0.1")
    try:
        params = hub_params_from_lockfile(lock)
        receiver.connect(hub_params=params)
        receiver.bind_receive_notification("image.load.fits", lambda *a, **k: received.append(a))
        before = set(_listening([me]))
        seen = []
        original = SAMPIntegratedClient.notify

        def watching_notify(self, *args, **kwargs):
            seen.extend(_listening([me]))  # while lenghu's client is connected
            return original(self, *args, **kwargs)

        monkeypatch.setattr(SAMPIntegratedClient, "notify", watching_notify)
        send(real_data / "ccd" / "wfpc2_mef" / "test0.fits", hub_params=params)
        end = time.monotonic() + 10
        while not received and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        receiver.disconnect()
        hub.stop()
    assert received, "the image did not arrive: nothing was checked"
    assert params["samp.hub.xmlrpc.url"].startswith("http://127.0.0.1:")
    assert seen and set(seen) <= before, f"lenghu's client listened: {set(seen) - before}"
    assert {ip for _, ip, _ in before} <= LOOPBACK
    record_property("observed", f"hub at {params['samp.hub.xmlrpc.url']}; sockets listening during send: "
                                f"{len(set(seen))}, all the hub's and the receiver's, all on loopback")
