"""Permission checks in-process: ours beside pycasbin's fastest fair form, same run.

``python -m bench.authz [--staff N] [--queries N] [--repeat N] [--no-write]``
(also part of ``make bench``). 10,000 staff, 50 departments and the full
rights catalogue, seeded. Every side answers the same query stream of the same
size (``--queries``, default 20,000), and all give the same answer to every
query, which is verified before timing.

* casbin (``authz.casbin_check_ops_per_s``): the flattened user → right
  policy (one line per staff member and effective right: what our copy holds,
  nothing left to resolve at check time) in a ``FastEnforcer`` whose policy is
  indexed by (subject, object), so each check evaluates the matcher on the
  lines of its own request only. pycasbin 2.8 has no cached enforcer
  (Enforcer, FastEnforcer, SyncedEnforcer, DistributedEnforcer); a result
  cache written here would time a dict lookup, not casbin.
* ours warm (``authz.check_vs_casbin``, goal ≥ 10): the effective rights
  identity has already computed, looked up in the ``AccessCopy`` every service
  keeps (filled from ``StaffAccessChanged``), as ``Authorizer.allowed``.
* ours cold (``authz.cold_vs_casbin``, goal ≥ 2): the member's effective rights
  computed from departments and individual grants on every query (identity's
  ``Staff.effective_rights``, with sources, what it runs when access
  changes), then the check.

Rounds are interleaved (ours warm, ours cold, casbin; again …); each ratio is
taken within its round and the figure is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin import persist
from casbin.model import FastModel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import goals
from services.identity.domain.staff import Staff
from shared.access.control import AccessCopy, Authorizer, IpPolicy, StaffAccessChanged
from shared.domain import rights as catalogue

STAFF = 10_000
DEPARTMENTS = 50
QUERIES = 20_000
ROUNDS = 3
SEED = 20_261_121

# The flattened policy: a request is allowed when a line names its subject and object.
ACL_MODEL = """
[request_definition]
r = sub, obj

[policy_definition]
p = sub, obj

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.sub == p.sub && r.obj == p.obj
"""

Check = Callable[[str, str], bool]


@dataclass
class Policy:
    department_rights: dict[str, frozenset[str]]
    members: dict[str, list[str]]  # staff -> departments
    grants: dict[str, frozenset[str]]  # staff -> individual rights as granted
    full_access: set[str]

    def effective(self, staff: str) -> frozenset[str]:
        """One member's effective rights (what identity publishes)."""
        if staff in self.full_access:
            return catalogue.ALL_RIGHTS
        return catalogue.expand(self.grants[staff]).union(
            *(self.department_rights[d] for d in self.members[staff])
        )


def make_policy(rng: random.Random, staff_count: int = STAFF) -> Policy:
    every = sorted(catalogue.ALL_RIGHTS)
    department_rights = {
        f"d{d}": catalogue.expand(rng.sample(every, rng.randint(3, 12))) for d in range(DEPARTMENTS)
    }
    members: dict[str, list[str]] = {}
    grants: dict[str, frozenset[str]] = {}
    full: set[str] = set()
    for s in range(staff_count):
        staff = f"s{s}"
        members[staff] = rng.sample(sorted(department_rights), rng.randint(0, 3))
        grants[staff] = frozenset(rng.sample(every, rng.randint(0, 3)))
        if rng.random() < 0.01:
            full.add(staff)
    return Policy(department_rights, members, grants, full)


# --------------------------------------------------------------------------- ours


def our_checker(policy: Policy) -> Check:
    """Warm: the precomputed effective rights in the access copy."""
    copy = AccessCopy()
    copy.apply_all(
        StaffAccessChanged(
            staff_id=staff,
            login=staff,
            disabled=False,
            full_access=staff in policy.full_access,
            rights=sorted(policy.effective(staff)),
            departments=departments,
            ip_policy=IpPolicy(),
            bind_session_to_ip=False,
        )
        for staff, departments in policy.members.items()
    )
    # The bare check uses no key; any public key stands in for identity's.
    return Authorizer(Ed25519PrivateKey.generate().public_key(), copy).allowed


def our_cold_checker(policy: Policy) -> Check:
    """Cold: the effective rights computed from departments and grants on every check."""
    members: dict[str, Staff] = {}
    for staff_id, departments in policy.members.items():
        staff = Staff()
        staff.id = staff_id
        staff.departments = list(departments)
        staff.full_access = staff_id in policy.full_access
        staff.individual_rights = set(policy.grants[staff_id])
        members[staff_id] = staff
    department_rights = policy.department_rights

    def allowed(staff_id: str, right: str) -> bool:
        staff = members.get(staff_id)
        return staff is not None and right in staff.effective_rights(department_rights)

    return allowed


# --------------------------------------------------------------------------- casbin


class PolicyLines(persist.Adapter):  # type: ignore[misc]
    """The flattened policy as casbin loads a policy file: each line through
    ``load_policy_line``. (``add_policies`` on a FastModel counts the whole policy
    for every line it adds, which takes hours at this size.)"""

    def __init__(self, rules: Sequence[tuple[str, str]]) -> None:
        self.rules = rules

    def load_policy(self, model: FastModel) -> None:
        for sub, obj in self.rules:
            persist.load_policy_line(f"p, {sub}, {obj}", model)


def casbin_enforcer(policy: Policy) -> casbin.FastEnforcer:
    """The flattened user -> right policy in a FastEnforcer whose policy is indexed by
    (subject, object), so a check evaluates the matcher only on the lines of its request
    (casbin's fastest form; pycasbin 2.8's index needs two keys)."""
    # FastEnforcer filters the policy only with a FastModel; given a model object (not a
    # path) it uses that object, so the FastModel is built here.
    model = FastModel([0, 1])
    model.load_model_from_text(ACL_MODEL)
    rules = [(s, r) for s in policy.members for r in sorted(policy.effective(s))]
    return casbin.FastEnforcer(model, PolicyLines(rules), cache_key_order=[0, 1])


# --------------------------------------------------------------------------- timing


def checks_per_second(check: Check, queries: Sequence[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for staff, right in queries:
        check(staff, right)
    return len(queries) / (time.perf_counter() - started)


def run(queries: int = QUERIES, rounds: int = ROUNDS, staff: int = STAFF) -> dict[str, float]:
    """Ours (warm and cold) and casbin on the same seeded query stream, rounds interleaved;
    returns the figures."""
    rng = random.Random(SEED)
    policy = make_policy(rng, staff)
    every = sorted(catalogue.ALL_RIGHTS)
    sample = [(f"s{rng.randrange(staff)}", rng.choice(every)) for _ in range(queries)]
    ours, ours_cold = our_checker(policy), our_cold_checker(policy)
    theirs: Check = casbin_enforcer(policy).enforce
    # Same answers, or the comparison means nothing.
    for staff_id, right in sample:
        if not ours(staff_id, right) == ours_cold(staff_id, right) == theirs(staff_id, right):
            raise AssertionError(f"the checkers disagree on {staff_id} / {right}")
    warm: list[float] = []
    cold: list[float] = []
    casbin_rates: list[float] = []
    for _ in range(rounds):
        warm.append(checks_per_second(ours, sample))
        cold.append(checks_per_second(ours_cold, sample))
        casbin_rates.append(checks_per_second(theirs, sample))
    return {
        "authz.check_vs_casbin": goals.median_ratio(warm, casbin_rates),
        "authz.cold_vs_casbin": goals.median_ratio(cold, casbin_rates),
        "authz.check_ops_per_s": statistics.median(warm),
        "authz.cold_check_ops_per_s": statistics.median(cold),
        "authz.casbin_check_ops_per_s": statistics.median(casbin_rates),
        "authz.queries": float(queries),
        "authz.rounds": float(rounds),
        "authz.casbin_policy_lines": float(sum(len(policy.effective(s)) for s in policy.members)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(prog="python -m bench.authz", description=__doc__)
    parser.add_argument("--staff", type=int, default=STAFF, help="staff members (figure: 10,000)")
    parser.add_argument("--queries", type=int, default=QUERIES, help="queries per side and round")
    parser.add_argument("--repeat", type=int, default=ROUNDS, help="interleaved rounds")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = run(args.queries, args.repeat, args.staff)
    goals.print_table(results, "Permission checks (ratios: ours / casbin, same round)")
    if not args.no_write:
        merge_json(args.output, goals.with_goals(goals.rounded(results)))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
