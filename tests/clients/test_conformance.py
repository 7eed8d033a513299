"""Real verifiers (Go, Java, JavaScript, Python libraries) against ``jwks-operator standalone``.

One standalone process serves one keyset per algorithm, rotating every few seconds. Every
verifier runs as a long-lived process (tests/clients/<lang>/, built by tests/clients/build.py)
driven over stdin/stdout, with its JWKS cache set to CACHE_SECONDS, well under prePublish.
Through ROTATIONS rotations of every keyset the suite checks, for every verifier:

- a token signed right after a rotation by the new key verifies;
- a token of the previous key verifies until its retireAfter is over, and is refused once
  the key has left the JWKS (measured: how long after, per verifier);
- expired, tampered, ``alg: none``, HMAC-with-the-public-key and foreign-keyset tokens are
  refused;
- a second process of each verifier with a long cache (LONG_CACHE_SECONDS) tells whether a
  kid it has never seen makes it refetch.

What it measures is compared with ``tests/clients/verifiers.py`` (the docs table) and
written to ``$JWKS_CLIENTS_CACHE/last-results.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, Final, Protocol

import pytest
from cryptography.hazmat.primitives import serialization

from jwks_operator.core.keys import b64url, generate_key, load_private_key
from jwks_operator.core.tokens import sign_token
from jwks_operator.server.runner import free_port
from tests.clients.build import (
    CACHE_ROOT,
    BuildError,
    Built,
    ToolMissing,
    build,
    gateway_binary,
    gateway_log,
)
from tests.clients.gateways import GatewayVerifier, oauth2_proxy, traefik, upstream
from tests.clients.verifiers import ALL, VERIFIERS, Verifier
from tests.standalone.support import StandaloneProcess, keyset_doc, read_state, write_config

LIBRARIES: Final = [verifier for verifier in VERIFIERS if verifier.language != "gateway"]
GATEWAY_ROWS: Final = {
    verifier.library: verifier for verifier in VERIFIERS if verifier.language == "gateway"
}

NAMESPACE: Final = "conf"
AUDIENCE: Final = "api"
ROTATIONS: Final = 3
INTERVAL: Final = 12.0
PRE_PUBLISH: Final = 4.0
RETIRE_AFTER: Final = 5.0
UNKNOWN_KID_COOLDOWN: Final = (
    32.0  # PyJWT's and jose's default wait between unknown-kid refetches is 30 s
)
CACHE_SECONDS: Final = 1.0
REFETCH_TRIES: Final = 3
"""Refetch triggers a verifier gets before a removed key it still accepts is a failure."""
LONG_CACHE_SECONDS: Final = 600.0
REMOVAL_POLL: Final = 0.2  # seconds between two asks about a removed key's token
TTL_SLACK: Final = 2.5  # a cache-ttl verifier refuses a removed key within CACHE_SECONDS + this
ROTATED_RE: Final = re.compile(
    rf"{NAMESPACE}/(\S+) Rotated: (\S+) is now active; (\S+) retired, published until (\S+)"
)
REMOVED_RE: Final = re.compile(rf"{NAMESPACE}/(\S+) KeyRemoved: retired key (\S+) left the JWKS")

pytestmark = pytest.mark.timeout(900)


def keyset_name(algorithm: str) -> str:
    return algorithm.lower()


class Verifying(Protocol):
    """A verifier program or a gateway: one request in, one answer out, in order."""

    verifier: Verifier

    def send(self, request: dict[str, str]) -> None: ...

    def receive(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class VerifierProcess:
    """One verifier program; ``ask`` sends requests to many at once, then reads the answers."""

    def __init__(self, verifier: Verifier, argv: list[str], log: Path) -> None:
        self.verifier = verifier
        self.log = log
        with log.open("wb") as stderr:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )

    def send(self, request: dict[str, str]) -> None:
        stdin: IO[str] | None = self.popen.stdin
        assert stdin is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.popen.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise AssertionError(
                f"{self.verifier.name} exited ({self.popen.poll()}): {self.log.read_text()[-2000:]}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.popen.stdin:
            self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def ask(processes: list[Verifying], requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    for process, request in zip(processes, requests, strict=True):
        process.send(request)
    return [process.receive() for process in processes]


@dataclass
class Results:
    """Every verification, and the measurements the docs table is checked against."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: list[str] = field(default_factory=list)
    unsupported: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refetched_new_kid: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    removal_delays: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    tokens: int = 0
    rotations: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused_after_refetch: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    removals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    polled: set[tuple[str, str]] = field(default_factory=set)  # (alg, kid) asked about once
    refused_at_first_ask: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    probe_errors: dict[str, str] = field(default_factory=dict)

    def expect(
        self, verifier: str, algorithm: str, case: str, answer: dict[str, Any], ok: bool
    ) -> None:
        self.counts[verifier] += 1
        if answer["ok"] != ok and algorithm not in self.unsupported[verifier]:
            want = "accepted" if ok else "refused"
            self.failures.append(
                f"{verifier} {algorithm} {case}: should be {want}, answer {answer}"
            )


class Tokens:
    """Signs the suite's tokens with the standalone's own keys (read from its state dir)."""

    def __init__(self, standalone: StandaloneProcess, issuers: dict[str, str]) -> None:
        self.standalone = standalone
        self.issuers = issuers
        self.count = 0
        self.foreign_keys: dict[str, Any] = {}

    def foreign(self, algorithm: str) -> Any:
        """A key of the same algorithm that no keyset of this standalone ever published."""
        if algorithm not in self.foreign_keys:
            size = 2048 if algorithm[:2] in ("RS", "PS") else None
            self.foreign_keys[algorithm] = generate_key(algorithm, size)
        return self.foreign_keys[algorithm]

    def claims(self, algorithm: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuers[algorithm],
            "aud": AUDIENCE,
            "sub": "alice",
            "email": "alice@example.com",
            "email_verified": True,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return claims

    def active(self, algorithm: str) -> Any:
        state = read_state(self.standalone.state_dir, NAMESPACE, keyset_name(algorithm))
        assert state.active is not None
        return state.active

    def valid(self, algorithm: str, kid: str) -> str:
        """A token of the key ``kid`` (the one the log just named active)."""
        state = read_state(self.standalone.state_dir, NAMESPACE, keyset_name(algorithm))
        key = state.find(kid)
        assert key is not None, f"{algorithm}: key {kid} is not in the state any more"
        self.count += 1
        return sign_token(key.material, self.claims(algorithm))

    def refusals(self, algorithm: str) -> dict[str, str]:
        """Tokens every verifier must refuse, made with (or against) the active key."""
        material = self.active(algorithm).material
        good = sign_token(material, self.claims(algorithm))
        header, payload, signature = good.split(".")
        tampered_claims = {**self.claims(algorithm), "sub": "mallory"}
        public_pem = (
            load_private_key(material.private_jwk)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        hs_header = b64url(json.dumps({"alg": "HS256", "kid": material.kid, "typ": "JWT"}).encode())
        hs_input = f"{hs_header}.{payload}".encode()
        none_header = b64url(
            json.dumps({"alg": "none", "kid": material.kid, "typ": "JWT"}).encode()
        )
        foreign = self.foreign(algorithm)
        tokens = {
            "expired": sign_token(
                material,
                self.claims(
                    algorithm,
                    exp=int(time.time()) - 600,
                    iat=int(time.time()) - 900,
                    nbf=int(time.time()) - 900,
                ),
            ),
            "tampered": f"{header}.{b64url(json.dumps(tampered_claims).encode())}.{signature}",
            "alg-none": f"{none_header}.{payload}.",
            "hmac-public-key": f"{hs_header}.{payload}."
            + b64url(hmac.new(public_pem, hs_input, hashlib.sha256).digest()),
            "foreign-keyset": sign_token(foreign, self.claims(algorithm)),
            "foreign-key-claiming-our-kid": sign_token(
                foreign, self.claims(algorithm), {"kid": material.kid}
            ),
            "wrong-audience": sign_token(material, self.claims(algorithm, aud="billing")),
        }
        self.count += len(tokens)
        return tokens


def start_clients(tmp_path: Path, cache_seconds: float) -> list[Verifying]:
    built: dict[str, Built] = {}
    processes: list[Verifying] = []
    for verifier in LIBRARIES:
        if verifier.language not in built:
            built[verifier.language] = build(verifier.language)
        argv = built[verifier.language].command(verifier.library, cache_seconds)
        log = tmp_path / f"{verifier.name}-{int(cache_seconds)}.log"
        processes.append(VerifierProcess(verifier, argv, log))
    return processes


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple[list[Verifying], list[Verifying]]]:
    try:
        short = start_clients(tmp_path, CACHE_SECONDS)
        long = start_clients(tmp_path, LONG_CACHE_SECONDS)
    except ToolMissing as missing:
        pytest.skip(f"a verifier's toolchain is missing: {missing}")
    except BuildError as error:
        pytest.fail(f"a verifier did not build: {error}")
    yield short, long
    for process in short + long:
        process.close()


def request(tokens: Tokens, port: int, algorithm: str, token: str) -> dict[str, str]:
    name = keyset_name(algorithm)
    return {
        "jwks": f"http://127.0.0.1:{port}/{NAMESPACE}/{name}/.well-known/jwks.json",
        "issuer": tokens.issuers[algorithm],
        "audience": AUDIENCE,
        "alg": algorithm,
        "token": token,
    }


def test_real_verifiers_through_rotations(
    tmp_path: Path, clients: tuple[list[Verifying], list[Verifying]]
) -> None:
    short, long = clients
    port = free_port()
    issuers = {alg: f"http://127.0.0.1:{port}/{NAMESPACE}/{keyset_name(alg)}" for alg in ALL}
    config = write_config(
        tmp_path / "keysets.yaml",
        *(
            keyset_doc(
                keyset_name(alg),
                NAMESPACE,
                algorithm=alg,
                interval=f"{INTERVAL}s",
                pre_publish=f"{PRE_PUBLISH}s",
                retire_after=f"{RETIRE_AFTER}s",
                issuer=issuers[alg],
            )
            for alg in ALL
        ),
    )
    standalone = StandaloneProcess(tmp_path, config, extra=["--port", str(port)]).started(60)
    tokens = Tokens(standalone, issuers)
    results = Results()
    not_run: dict[str, str] = {}
    gateways: list[GatewayVerifier] = []
    try:
        with upstream() as upstream_port:
            for copy, processes in (("short", short), ("long", long)):
                for name, verifier in GATEWAY_ROWS.items():
                    binary = gateway_binary(name)
                    if not binary.exists():
                        not_run[verifier.name] = f"not built: {gateway_log(name)}"
                        continue
                    workdir = tmp_path / f"{name}-{copy}"
                    if name == "oauth2-proxy":
                        gateway = oauth2_proxy(
                            verifier,
                            binary,
                            workdir,
                            port,
                            [issuers[a] for a in ALL],
                            upstream_port,
                        )
                    else:
                        keysets = [(NAMESPACE, keyset_name(a)) for a in ALL]
                        gateway = traefik(verifier, binary, workdir, port, keysets, upstream_port)
                    gateways.append(gateway)
                    processes.append(gateway)
            run_scenario(standalone, tokens, short, long, results)
    finally:
        for gateway in gateways:
            gateway.close()
        standalone.stop()
    report = {
        "verifiers": len(VERIFIERS),
        "algorithms": len(ALL),
        "rotations": dict(results.rotations),
        "tokens": tokens.count,
        "verifications": sum(results.counts.values()),
        "per_verifier": dict(results.counts),
        "not_run": not_run,
        "unsupported": {name: sorted(algs) for name, algs in results.unsupported.items()},
        "refetched_new_kid": dict(results.refetched_new_kid),
        "unknown_kid_probe_errors": results.probe_errors,
        "refused_only_after_refetch": dict(results.refused_after_refetch),
        "refused_at_first_ask": dict(results.refused_at_first_ask),
        "removal_delays": {
            name: [round(d, 2) for d in ds] for name, ds in results.removal_delays.items()
        },
    }
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    (CACHE_ROOT / "last-results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    compare_with_table(results, skip=set(not_run))
    assert not results.failures, "\n".join(results.failures)


def ask_all(
    processes: list[Verifying], tokens: Tokens, port: int, alg: str, token: str
) -> list[tuple[Verifying, dict[str, Any]]]:
    answers = ask(processes, [request(tokens, port, alg, token)] * len(processes))
    return list(zip(processes, answers, strict=True))


def run_scenario(
    standalone: StandaloneProcess,
    tokens: Tokens,
    short: list[Verifying],
    long: list[Verifying],
    results: Results,
) -> None:
    """Follows the standalone's log and checks every verifier at each rotation and removal.

    The checks whose timing matters (right after a rotation, after a removal) run as soon as
    the log line is seen; the refusal tokens and the unknown-kid probe wait in ``deferred``
    until nothing urgent is left, so ten keysets rotating at once do not delay each other
    past retireAfter.
    """
    port = standalone.port
    names = {keyset_name(alg): alg for alg in ALL}
    current: dict[str, tuple[str, str]] = {}  # alg -> (kid, token)
    long_filled: dict[str, float] = {}
    for alg in ALL:
        key = tokens.active(alg)
        current[alg] = (key.kid, tokens.valid(alg, key.kid))
    # Bootstrap: the first key's token in both processes of every verifier; an algorithm a
    # verifier refuses here is one it does not support (checked against the table).
    for processes in (short, long):
        for alg in ALL:
            for process, answer in ask_all(processes, tokens, port, alg, current[alg][1]):
                results.counts[process.verifier.name] += 1
                if not answer["ok"]:
                    results.unsupported[process.verifier.name].add(alg)
            if processes is long:
                long_filled[alg] = time.monotonic()
    deferred: list[tuple[float, Callable[[], None]]] = [  # (not before, check)
        (0.0, partial(check_refusals, tokens, port, short, results, alg)) for alg in ALL
    ]
    previous: dict[str, tuple[str, str]] = {}
    removed_pending: dict[str, tuple[str, str, float, set[int]]] = {}
    seen = 0
    last_poll = 0.0
    deadline = time.monotonic() + INTERVAL * (ROTATIONS + 3) + 60
    while (
        min(results.removals.get(alg, 0) for alg in ALL) < ROTATIONS or removed_pending or deferred
    ):
        assert time.monotonic() < deadline, f"scenario did not finish: {dict(results.removals)}"
        text = standalone.output()
        text = text[: text.rfind("\n") + 1]  # whole lines only
        events = sorted(
            [(m.start(), "rotated", m.groups()) for m in ROTATED_RE.finditer(text, seen)]
            + [(m.start(), "removed", m.groups()) for m in REMOVED_RE.finditer(text, seen)]
        )
        seen = len(text)
        for _, kind, groups in events:
            alg = names[groups[0]]
            done = results.rotations if kind == "rotated" else results.removals
            if done[alg] >= ROTATIONS:  # this keyset is through; its later events add nothing
                continue
            if kind == "rotated":
                _, new_kid, old_kid, until = groups
                assert current[alg][0] == old_kid, (
                    f"{alg}: rotated from {old_kid}, expected {current[alg][0]}"
                )
                new = (new_kid, tokens.valid(alg, new_kid))
                rotation = results.rotations[alg] + 1
                margin = datetime.fromisoformat(until).timestamp() - time.time()
                if margin < 0.5:  # not the verifiers' fault: the suite itself fell behind
                    results.failures.append(
                        f"suite: {alg} rotation {rotation} seen {-margin:.1f}s past its retireAfter"
                    )
                for case, token in (
                    ("new key right after rotation", new[1]),
                    ("previous key, before retireAfter", current[alg][1]),
                ):
                    for process, answer in ask_all(short, tokens, port, alg, token):
                        results.expect(
                            process.verifier.name,
                            alg,
                            f"rotation {rotation}: {case}",
                            answer,
                            ok=True,
                        )
                if rotation == ROTATIONS:
                    # This key was published after the long caches filled; asked more than
                    # the 30 s some libraries wait between two refetches for an unknown kid.
                    due = long_filled[alg] + UNKNOWN_KID_COOLDOWN
                    deferred.append(
                        (due, partial(probe_unknown_kid, tokens, port, long, results, alg, new[1]))
                    )
                deferred.append((0.0, partial(check_refusals, tokens, port, short, results, alg)))
                previous[alg], current[alg] = current[alg], new
                results.rotations[alg] = rotation
            else:
                _, kid = groups
                assert previous[alg][0] == kid, f"{alg}: removed {kid}, expected {previous[alg][0]}"
                still = {
                    i
                    for i, p in enumerate(short)
                    if alg not in results.unsupported[p.verifier.name]
                }
                removed_pending[alg] = (kid, previous[alg][1], time.monotonic(), still)
                results.removals[alg] += 1
        if time.monotonic() - last_poll >= REMOVAL_POLL:
            last_poll = time.monotonic()
            for alg, (kid, token, since, still) in list(removed_pending.items()):
                poll_removed(tokens, port, short, results, alg, kid, token, since, still)
                if not still:
                    del removed_pending[alg]
        if not events:
            now = time.monotonic()
            ready = [item for item in deferred if item[0] <= now][:1]
            for item in ready:
                deferred.remove(item)
                item[1]()
        time.sleep(0.05)


def probe_unknown_kid(
    tokens: Tokens, port: int, long: list[Verifying], results: Results, alg: str, token: str
) -> None:
    """Does a verifier whose cache is still young accept a kid it has never fetched?"""
    for process, answer in ask_all(long, tokens, port, alg, token):
        name = process.verifier.name
        results.counts[name] += 1
        if alg not in results.unsupported[name]:
            results.refetched_new_kid[name].append(bool(answer["ok"]))
            if not answer["ok"]:
                results.probe_errors[name] = str(answer.get("error"))


def poll_removed(
    tokens: Tokens,
    port: int,
    short: list[Verifying],
    results: Results,
    alg: str,
    kid: str,
    token: str,
    since: float,
    still: set[int],
) -> None:
    """Asks the verifiers that still accept the removed key's token again.

    Past CACHE_SECONDS + TTL_SLACK a verifier that still accepts it is sent a token of an
    unknown kid (which makes most caches refetch) and asked once more: refused then is
    "until the next refetch", accepted then is a failure.
    """
    first = (alg, kid) not in results.polled
    results.polled.add((alg, kid))
    order = sorted(still)
    answers = ask([short[i] for i in order], [request(tokens, port, alg, token)] * len(order))
    overdue = time.monotonic() - since > CACHE_SECONDS + TTL_SLACK
    for i, answer in zip(order, answers, strict=True):
        name = short[i].verifier.name
        results.counts[name] += 1
        if not answer["ok"]:
            still.discard(i)
            results.removal_delays[name].append(time.monotonic() - since)
            results.refused_at_first_ask[name] += first
        elif overdue:
            still.discard(i)
            # A refetch the trigger starts may still be on its way when the token is asked
            # again on a loaded machine: up to three triggers, a second apart.
            for attempt in range(REFETCH_TRIES):
                if attempt:
                    time.sleep(1)
                miss = sign_token(tokens.foreign(alg), tokens.claims(alg))
                short[i].send(request(tokens, port, alg, miss))
                results.expect(
                    name, alg, "foreign-keyset (refetch trigger)", short[i].receive(), ok=False
                )
                short[i].send(request(tokens, port, alg, token))
                again = short[i].receive()
                results.counts[name] += 2
                if not again["ok"]:
                    break
            if again["ok"]:
                results.failures.append(
                    f"{name} {alg}: removed key {kid} still accepted after a refetch"
                )
            else:
                results.refused_after_refetch[name] += 1


def check_refusals(
    tokens: Tokens, port: int, processes: list[Verifying], results: Results, alg: str
) -> None:
    for case, token in tokens.refusals(alg).items():
        for process, answer in ask_all(processes, tokens, port, alg, token):
            results.expect(process.verifier.name, alg, case, answer, ok=False)


def compare_with_table(results: Results, skip: set[str]) -> None:
    """The docs table (``VERIFIERS``) says what was measured, row by row."""
    for verifier in VERIFIERS:
        name = verifier.name
        if name in skip:
            continue
        supported = tuple(alg for alg in ALL if alg not in results.unsupported[name])
        if supported != verifier.algorithms:
            results.failures.append(
                f"{name}: verifies {supported}, the table says {verifier.algorithms}"
            )
        refetched = results.refetched_new_kid[name]
        if not refetched or any(refetched) != all(refetched):
            results.failures.append(f"{name}: unknown-kid probe inconclusive: {refetched}")
        elif refetched[0] != (verifier.refetch_on_unknown_kid is not False):
            results.failures.append(
                f"{name}: refetch on an unknown kid is {refetched[0]}, the table says {verifier.refetch_on_unknown_kid}"
            )
        delays = results.removal_delays[name]
        late = results.refused_after_refetch[name]
        if verifier.removal == "cache-ttl" and late:
            results.failures.append(
                f"{name}: {late} removed keys verified past the cache lifetime ({CACHE_SECONDS}s + {TTL_SLACK}s)"
            )
        if verifier.removal == "at-once" and (
            late or results.refused_at_first_ask[name] < len(delays)
        ):
            results.failures.append(
                f"{name}: {results.refused_at_first_ask[name]} of {len(delays)} removed keys refused at the first ask after removal, {late} only after a refetch; the table says at once"
            )
        if verifier.removal == "next-refetch" and not late:
            results.failures.append(
                f"{name}: removed keys refused {delays} s after removal, {late} only after a refetch; the table says only at the next refetch"
            )
