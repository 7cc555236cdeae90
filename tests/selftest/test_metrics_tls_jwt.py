"""The simulated device reports over HTTPS with a JWT as well as its payload auth (issue 19 item
10): on a rig that says so (docs/rigs/virtual-https-jwt.toml, its TEST ONLY certificate and
secret) the Metrics device tests pass end to end; a device built with another JWT secret, or
without a CA that verifies the server's certificate, fails them, the failure naming JWT or TLS;
and no secret reaches the traffic log, record.json or the report."""

from __future__ import annotations

from pathlib import Path

from bench.detection.runner import run_device_suite
from tests.selftest import background

ROOT = Path(__file__).resolve().parents[2]
RIG = ROOT / "docs" / "rigs" / "virtual-https-jwt.toml"
DATA = ROOT / "tests" / "selftest" / "data" / "metrics_tls"
SELECTED = "test_metrics_payload_conforms"
TEST = f"tests/device/test_metrics.py::{SELECTED}"
WRONG_SECRET = "another-TEST-ONLY-secret-the-server-does-not-know-0123456789"


def _rig(tmp_path: Path, name: str, sim_ca: str, sim_secret_file: Path) -> Path:
    """The HTTPS+JWT rig with the simulated build's CA and secret file replaced."""
    text = RIG.read_text(encoding="utf-8").replace("../../tests/selftest/data/metrics_tls", str(DATA))
    lines = [line for line in text.splitlines() if not line.startswith(("metrics_ca_file", "metrics_jwt_secret_file"))]
    ca = [f'metrics_ca_file = "{sim_ca}"'] if sim_ca else []
    rig = tmp_path / f"{name}.toml"
    rig.write_text("\n".join([*lines, *ca, f'metrics_jwt_secret_file = "{sim_secret_file}"', ""]), encoding="utf-8")
    return rig


def _run(tmp_path: Path, name: str, rig: Path):
    out = tmp_path / name
    results, output = run_device_suite(out, args=["--rig", str(rig), "-k", SELECTED], paths=(TEST,))
    return results[TEST], output, out


def _leaks(run_dir: Path, secrets: list[str]) -> list[str]:
    return [
        f"{p.relative_to(run_dir)} holds a secret"
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)
    ]


@background.scenario
def three_runs(tmp: Path) -> dict:
    """The good rig, a wrong JWT secret, no CA: on the session's pool, beside the other self-tests."""
    wrong = tmp / "wrong-secret.txt"
    wrong.write_text(WRONG_SECRET + "\n", encoding="utf-8")
    return {
        "good": _run(tmp, "good", RIG),
        "wrong-jwt": _run(tmp, "wrong-jwt", _rig(tmp, "wrong-jwt", str(DATA / "cert.pem"), wrong)),
        "no-ca": _run(tmp, "no-ca", _rig(tmp, "no-ca", "", DATA / "jwt-secret.txt")),
    }


def test_metrics_over_https_with_jwt(request):
    """Good: passes, every stored request authenticated by payload auth and JWT. Wrong JWT secret:
    fails naming the JWT. No CA of the rig (the system's store cannot verify the TEST ONLY
    certificate): fails naming TLS. No run leaks either secret."""
    secret = (DATA / "jwt-secret.txt").read_text(encoding="utf-8").strip()
    seen = background.result(request, three_runs)

    case, output, good_dir = seen["good"]
    assert case.outcome == "passed", output
    traffic = "".join(p.read_text(errors="replace") for p in (good_dir / "run").rglob("*.log"))
    assert "https://127.0.0.1:" in traffic, "the device was not configured with an HTTPS URL"

    case, output, bad_jwt_dir = seen["wrong-jwt"]
    assert case.outcome == "failed", output
    assert "jwt" in case.message.lower(), case.message

    case, output, bad_tls_dir = seen["no-ca"]
    assert case.outcome == "failed", output
    assert "tls" in case.message.lower(), case.message

    for run_dir in (good_dir, bad_jwt_dir, bad_tls_dir):
        assert not _leaks(run_dir, [secret, WRONG_SECRET]), _leaks(run_dir, [secret, WRONG_SECRET])
