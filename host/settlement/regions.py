"""Which policy settles a resident: the one of the region where they are insured.

异地就医 follows "the catalogue of the place of treatment, the policy of the place of enrolment":
a resident is settled under the policy whose `regions` hold the longest prefix of their
`insu_admdvs` (a county's 6 digits over a city's 4 over a province's 2), else under the default
(the one policy without `regions`), else under none, and the counter settles them. The bill's
[catalogue] (the class-B share paid first) is that of the policy chosen the same way for the
region treated in (`mdtrtarea_admvs`); if none covers it, the enrolment policy's own.

    policies = load_policy_set(["reference", "zhengzhou.toml"])  # PolicyError if they clash
    policy = policies.for_region("410102")  # None: no policy here covers that region
    policy = policies.for_claim("410102", "130630")  # what settle() is given for such a claim
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .loader import PolicyError, load_policy
from .policy import Policy


class PolicySet:
    """Policies by the enrolment regions they govern, each given with its source (the name or
    path it was loaded from) to name it in errors."""

    def __init__(self, policies: Sequence[tuple[str, Policy]]) -> None:
        if not policies:
            raise PolicyError("no policy given")
        self.policies: tuple[Policy, ...] = tuple(policy for _, policy in policies)
        self.default: Policy | None = _the_default(policies)
        self._by_prefix: dict[str, Policy] = _by_prefix(policies)
        _check_names(policies)
        # for_claim's policies, by enrolment policy name then treatment policy name: each pair
        # combined once, on its first claim, then only looked up.
        self._combined: dict[str, dict[str, Policy]] = {p.name: {} for p in self.policies}

    def for_region(self, insu_admdvs: str) -> Policy | None:
        """The policy for a resident insured in `insu_admdvs` (6 digits); None if none covers it.
        On every settlement: a few dict lookups, no more."""
        if self._by_prefix:
            find = self._by_prefix.get  # county, city, province: the most specific first
            policy = find(insu_admdvs[:6]) or find(insu_admdvs[:4]) or find(insu_admdvs[:2])
            if policy is not None:
                return policy
        return self.default

    def for_claim(self, insu_admdvs: str, mdtrtarea_admvs: str) -> Policy | None:
        """The policy a claim is settled with: the enrolment region's (for_region(insu_admdvs):
        deductibles, ratios, caps, serious illness, assistance, the off-site cut) with the
        [catalogue] of the policy for the treatment region (for_region(mdtrtarea_admvs), the
        default too), or its own if no policy covers that region. None if none covers the
        enrolment region. One policy alone, or both regions under one: that policy itself."""
        sources = self.sources(insu_admdvs, mdtrtarea_admvs)
        if sources is None:
            return None
        enrolment, treatment = sources
        if treatment is enrolment:
            return enrolment
        by_treatment = self._combined[enrolment.name]
        combined = by_treatment.get(treatment.name)
        if combined is None:  # setdefault: two threads' first claims keep one of the two
            combined = by_treatment.setdefault(
                treatment.name, enrolment.with_catalogue_of(treatment))
        return combined

    def sources(self, insu_admdvs: str,
                mdtrtarea_admvs: str) -> tuple[Policy, Policy] | None:
        """(the policy for_claim takes all but the catalogue from, the one it takes the
        catalogue from: the same policy when one covers both); None as for_claim."""
        enrolment = self.for_region(insu_admdvs)
        if enrolment is None:
            return None
        return enrolment, self.for_region(mdtrtarea_admvs) or enrolment


def load_policy_set(names_or_paths: Sequence[str | os.PathLike[str]]) -> PolicySet:
    """Load each policy (see load_policy) and check they divide the regions between them."""
    return PolicySet([(os.fspath(name), load_policy(name)) for name in names_or_paths])


def _the_default(policies: Sequence[tuple[str, Policy]]) -> Policy | None:
    defaults = [(source, policy) for source, policy in policies if not policy.regions]
    if len(defaults) > 1:
        raise PolicyError(
            f"policies {defaults[0][0]} and {defaults[1][0]} are both defaults (no "
            "policy.regions): give every policy but one the regions it governs"
        )
    return defaults[0][1] if defaults else None


def _by_prefix(policies: Sequence[tuple[str, Policy]]) -> dict[str, Policy]:
    claimed: dict[str, str] = {}  # prefix -> source, to name both in the error
    by_prefix: dict[str, Policy] = {}
    for source, policy in policies:
        for prefix in policy.regions:
            if prefix in claimed:
                raise PolicyError(
                    f"policies {claimed[prefix]} and {source} both claim region {prefix}: a "
                    "resident is settled under one policy"
                )
            claimed[prefix] = source
            by_prefix[prefix] = policy
    return by_prefix


def _check_names(policies: Sequence[tuple[str, Policy]]) -> None:
    """The gateway logs the name of the policy it settled with: it must tell them apart."""
    named: dict[str, str] = {}
    for source, policy in policies:
        if policy.name in named:
            raise PolicyError(
                f"policies {named[policy.name]} and {source} are both named {policy.name!r} "
                "(policy.name): the log could not say which one settled"
            )
        named[policy.name] = source
