"""Who is calling: the identity every authenticator produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SYSTEM_MASTERS = "system:masters"
SYSTEM_AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated identity, as Kubernetes' ``user.Info`` has it.

    ``extra`` keys are lower-case. ``groups`` always contain
    ``system:authenticated`` once produced by an authenticator.
    """

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def with_authenticated_group(self) -> UserInfo:
        """Add ``system:authenticated`` like k8s.io/apiserver's AuthenticatedGroupAdder."""
        if SYSTEM_AUTHENTICATED in self.groups:
            return self
        return UserInfo(self.name, (*self.groups, SYSTEM_AUTHENTICATED), self.uid, self.extra)

    def cache_key(self) -> tuple[object, ...]:
        """Everything a SubjectAccessReview sees of this user, hashable."""
        extra = tuple(sorted((k, tuple(v)) for k, v in self.extra.items()))
        return (self.name, self.groups, self.uid, extra)
