"""Domain layer: rules on tags, per namespace or per repository of it — immutable tags, and retention.

An immutable rule (a tag pattern such as `v*`) refuses any write that would take a matching tag away from its
manifest: a push of another manifest over it, its deletion (also when its manifest is deleted by digest), a restore
over it, and the deletion of the whole repository while it holds one. Creating a new matching tag is allowed, and so
is pushing the same manifest again (nothing changes). The check is a `Lifecycle` part (`ImmutableTags`), asked only
when a tag moves or goes, with one indexed read of the namespace's immutable rules per request.

A retention rule is opt-in and applied by `stevedore gc` (domain/gc.py, `Retention`): among a repository's tags
matching its pattern it keeps the `keep_newest` most recently pushed and/or those pushed within `keep_days`, and
removes the other tags (their manifests become untagged); `untagged_days` removes manifests that have had no tag for
longer than that. When several rules cover a tag, it is kept if any of them keeps it; a tag an immutable rule
protects is never removed. Everything here is pure: the decisions take the state as values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from stevedore.domain.errors import Denied, InvalidInput, NameInvalid, NotFound
from stevedore.domain.lifecycle import Event, TagChange
from stevedore.domain.model import Account, Digest, RepositoryName
from stevedore.domain.namespaces import may_manage_namespace, namespace_of
from stevedore.domain.ports import Clock

if TYPE_CHECKING:
    from stevedore.domain.access import Access

MAX_PATTERN_LENGTH = 128  # a tag's own limit: a longer pattern of literal characters could match nothing
MAX_KEEP_NEWEST = 1_000_000
MAX_DAYS = 36_500  # a hundred years: longer is a typo
MAX_RULES_PER_NAMESPACE = 100  # each write that moves a tag reads them all

# A tag's characters (model.py's tag grammar), and what a pattern adds: `*`, `?` and bracket expressions.
_TAG_CHAR = re.compile(r"[A-Za-z0-9_.\-]")


class RuleKind(StrEnum):
    IMMUTABLE = "immutable"
    RETENTION = "retention"


class RuleUnknown(NotFound):
    pass


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A tag glob as a regular expression matched against the whole tag: `*` any run of characters (none too), `?`
    one, `[abc]`, `[a-z]`, `[!a-z]` one of (not of) those; every other character is itself and must be one a tag
    may hold. Raises InvalidInput with what is wrong."""
    if not pattern:
        raise InvalidInput("the tag pattern is empty: use * for every tag")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidInput(f"the tag pattern is longer than {MAX_PATTERN_LENGTH} characters")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise InvalidInput(f"the tag pattern {pattern!r} opens a [ it does not close")
            body = pattern[i + 1 : end]
            negate = body.startswith(("!", "^"))
            if negate:
                body = body[1:]
            if not body:
                raise InvalidInput(f"the tag pattern {pattern!r} has an empty [ ]")
            out.append(("[^" if negate else "[") + _bracket(pattern, body) + "]")
            i = end
        elif char == "]":
            raise InvalidInput(f"the tag pattern {pattern!r} closes a ] it did not open")
        elif _TAG_CHAR.fullmatch(char):
            out.append(re.escape(char))
        else:
            raise InvalidInput(
                f"the tag pattern {pattern!r} holds {char!r}: a tag has letters, digits, '_', '.' and '-'; "
                "a pattern adds *, ? and [...]"
            )
        i += 1
    return re.compile("".join(out), re.ASCII)


def _bracket(pattern: str, body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if not _TAG_CHAR.fullmatch(char):
            raise InvalidInput(f"the tag pattern {pattern!r} holds {char!r} in a [ ]: only a tag's characters")
        if i + 2 < len(body) and body[i + 1] == "-":
            last = body[i + 2]
            if not _TAG_CHAR.fullmatch(last) or last < char:
                raise InvalidInput(f"the tag pattern {pattern!r} has a bad range {char}-{last}")
            out.append(f"{re.escape(char)}-{re.escape(last)}")
            i += 3
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def validate_pattern(pattern: str) -> str:
    text = (pattern or "").strip()
    compile_pattern(text)
    return text


@dataclass(frozen=True)
class TagRule:
    namespace: str
    repository: str | None  # None: every repository of the namespace
    kind: RuleKind
    pattern: str
    keep_newest: int | None = None
    keep_days: int | None = None
    untagged_days: int | None = None
    id: int | None = None
    created_at: datetime | None = None
    created_by: str | None = None

    def covers(self, repository: RepositoryName | str) -> bool:
        name = repository.value if isinstance(repository, RepositoryName) else repository
        if self.repository is not None:
            return name == self.repository
        return name == self.namespace or name.startswith(self.namespace + "/")

    def matches(self, tag: str) -> bool:
        return compile_pattern(self.pattern).fullmatch(tag) is not None

    @property
    def scope(self) -> str:
        return self.repository or self.namespace

    @property
    def keeps_tags(self) -> bool:
        """A retention rule that decides about tags (else it only removes untagged manifests)."""
        return self.kind is RuleKind.RETENTION and (self.keep_newest is not None or self.keep_days is not None)

    def where(self) -> str:
        if self.repository is not None:
            return f"the repository {self.repository}"
        return f"the namespace {self.namespace}"

    def describe(self) -> str:
        """One line for the audit log and messages: `immutable v* on the namespace acme`."""
        text = f"{self.kind.value} {self.pattern} on {self.where()}"
        if self.kind is RuleKind.RETENTION:
            text += ": " + "; ".join(self.parameters())
        return text

    def parameters(self) -> list[str]:
        said = []
        if self.keep_newest is not None:
            said.append(f"keep the {self.keep_newest} newest")
        if self.keep_days is not None:
            said.append(f"keep those pushed within {self.keep_days} days")
        if self.untagged_days is not None:
            said.append(f"remove untagged manifests after {self.untagged_days} days")
        return said


def _count(label: str, text: str | None, highest: int) -> int | None:
    value = (text or "").strip()
    if not value:
        return None
    if value.startswith("-"):
        raise InvalidInput(f"{label} cannot be negative")
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"{label} is a whole number, or empty for none")
    number = int(value)
    if number > highest:
        raise InvalidInput(f"{label} is at most {highest}")
    return number


@dataclass(frozen=True)
class RuleForm:
    """A rule as typed on the page: text, validated by `parse_rule`."""

    kind: str
    pattern: str
    repository: str = ""
    keep_newest: str = ""
    keep_days: str = ""
    untagged_days: str = ""


def parse_rule(namespace: str, form: RuleForm) -> TagRule:
    """A valid rule of `namespace`, or InvalidInput saying what is wrong."""
    try:
        kind = RuleKind(form.kind.strip())
    except ValueError:
        raise InvalidInput(f"unknown kind of rule {form.kind[:20]!r}: immutable or retention") from None
    pattern = validate_pattern(form.pattern)
    repository: str | None = None
    text = form.repository.strip()
    if text:
        try:
            name = RepositoryName.parse(text)
        except NameInvalid:
            raise InvalidInput(f"{text[:300]!r} is not a repository name") from None
        if namespace_of(name) != namespace:
            raise InvalidInput(f"the repository {name} is not in the namespace {namespace}")
        repository = name.value
    keep_newest = _count("the number of newest tags to keep", form.keep_newest, MAX_KEEP_NEWEST)
    keep_days = _count("the days tags are kept", form.keep_days, MAX_DAYS)
    untagged_days = _count("the days untagged manifests are kept", form.untagged_days, MAX_DAYS)
    given = (keep_newest, keep_days, untagged_days)
    if kind is RuleKind.IMMUTABLE and any(value is not None for value in given):
        raise InvalidInput("an immutable rule takes no retention numbers: leave them empty")
    if kind is RuleKind.RETENTION and all(value is None for value in given):
        raise InvalidInput(
            "a retention rule needs at least one of: the newest tags to keep, the days tags are kept, "
            "the days untagged manifests are kept"
        )
    return TagRule(namespace, repository, kind, pattern, keep_newest, keep_days, untagged_days)


# --- immutable tags ------------------------------------------------------------------------------------------------


def protecting_rule(rules: Iterable[TagRule], repository: RepositoryName | str, tag: str) -> TagRule | None:
    """The first immutable rule that covers the repository and matches the tag, if any."""
    for rule in rules:
        if rule.kind is RuleKind.IMMUTABLE and rule.covers(repository) and rule.matches(tag):
            return rule
    return None


def refusal(change: TagChange, rule: TagRule) -> Denied:
    if change.new is None:
        what = "it cannot be deleted (nor its manifest)"
    elif change.cause == "restore":
        what = "it cannot be put back on another manifest"
    else:
        what = "it cannot be pushed over with another manifest"
    return Denied(
        f"tag {change.tag} of {change.repository} is immutable (rule {rule.pattern} on {rule.where()}): {what}",
        detail={"tag": change.tag, "rule": rule.pattern, "scope": rule.scope},
    )


class ImmutableTags:
    """The lifecycle part that refuses a change to an immutable tag. `immutable_rules(namespace)` reads the
    namespace's immutable rules; it is asked at most once per namespace (the part lives for one request), and only
    when a tag that existed moves or goes: a new tag (`change.old` None) is always allowed."""

    def __init__(self, immutable_rules: Callable[[str], Sequence[TagRule]]) -> None:
        self.immutable_rules = immutable_rules
        self._known: dict[str, Sequence[TagRule]] = {}

    def rules_of(self, namespace: str) -> Sequence[TagRule]:
        if namespace not in self._known:
            self._known[namespace] = self.immutable_rules(namespace)
        return self._known[namespace]

    def before_push(self, name: RepositoryName) -> None:
        pass

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        pass

    def before_tag_change(self, change: TagChange) -> None:
        if change.old is None:
            return  # a new tag (a first push, or a deleted tag put back): nothing is taken from anyone
        rule = protecting_rule(self.rules_of(namespace_of(change.repository)), change.repository, change.tag)
        if rule is not None:
            raise refusal(change, rule)

    def changed(self, events: Sequence[Event]) -> None:
        pass

    def refuse_repository_deletion(self, name: RepositoryName, tags: Callable[[], Iterable[str]]) -> None:
        """Deleting a whole repository takes every tag away: refused while it holds an immutable one (as Harbor
        does), naming the first few. `tags` lists the repository's tags; asked only when a rule covers it."""
        rules = [rule for rule in self.rules_of(namespace_of(name)) if rule.covers(name)]
        if not rules:
            return
        protected = [(tag, rule) for tag in tags() if (rule := protecting_rule(rules, name, tag)) is not None]
        if not protected:
            return
        shown = ", ".join(tag for tag, _ in protected[:5]) + (" …" if len(protected) > 5 else "")
        first = protected[0][1]
        raise Denied(
            f"the repository {name} holds {len(protected)} immutable tag{'s' if len(protected) != 1 else ''} "
            f"({shown}; rule {first.pattern} on {first.where()}): remove the rule to delete the repository",
            detail={"name": name.value, "rule": first.pattern, "scope": first.scope},
        )


# --- retention -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagState:
    """A tag as retention sees it: where it points and when it was last pushed."""

    tag: str
    digest: str
    pushed_at: datetime


@dataclass(frozen=True)
class ManifestState:
    """A manifest as retention sees it: when it was pushed, whether a tag points at it, the manifests it lists (an
    index's children) and its subject (a referrer's)."""

    digest: str
    pushed_at: datetime
    tagged: bool
    children: frozenset[str] = frozenset()
    subject: str | None = None


def covering(rules: Iterable[TagRule], repository: RepositoryName | str) -> list[TagRule]:
    return [rule for rule in rules if rule.covers(repository)]


def tags_to_remove(
    rules: Sequence[TagRule], repository: RepositoryName | str, tags: Sequence[TagState], now: datetime
) -> list[TagState]:
    """The tags retention removes from the repository: those some retention rule covers (its pattern matches) and
    none keeps, and no immutable rule protects; by name. Newest is by push time, ties by name."""
    rules = covering(rules, repository)
    covered: set[str] = set()
    kept: set[str] = set()
    for rule in rules:
        if not rule.keeps_tags:
            continue
        matching = [state for state in tags if rule.matches(state.tag)]
        covered.update(state.tag for state in matching)
        if rule.keep_newest is not None:
            newest = sorted(matching, key=lambda state: (-state.pushed_at.timestamp(), state.tag))
            kept.update(state.tag for state in newest[: rule.keep_newest])
        if rule.keep_days is not None:
            since = now - timedelta(days=rule.keep_days)
            kept.update(state.tag for state in matching if state.pushed_at >= since)
    return sorted(
        (
            state
            for state in tags
            if state.tag in covered and state.tag not in kept and protecting_rule(rules, repository, state.tag) is None
        ),
        key=lambda state: state.tag,
    )


def untagged_cutoff(rules: Sequence[TagRule], repository: RepositoryName | str, now: datetime) -> datetime | None:
    """Untagged manifests pushed before this go (None: no rule removes them). With several rules the longest
    `untagged_days` wins: a manifest is kept if any rule keeps it."""
    days = [
        rule.untagged_days
        for rule in covering(rules, repository)
        if rule.kind is RuleKind.RETENTION and rule.untagged_days is not None
    ]
    return now - timedelta(days=max(days)) if days else None


def manifests_to_remove(manifests: Sequence[ManifestState], cutoff: datetime, in_recent_history: set[str]) -> list[str]:
    """The untagged manifests to remove: pushed before `cutoff`, not named in the repository's recent tag history
    (a restore may want them), not a child of a manifest that stays (an index), not a referrer whose subject stays.
    A whole dead index goes with its children, a dead subject with its referrers. In an order where every manifest
    comes after the index that listed it and after its subject, so that each removal can be checked again on its
    own against what is left."""
    held = {m.digest: m for m in manifests}
    doomed = {
        m.digest for m in manifests if not m.tagged and m.pushed_at < cutoff and m.digest not in in_recent_history
    }
    changed = True
    while changed:
        changed = False
        for manifest in manifests:
            if manifest.digest in doomed:
                continue
            saved = doomed & manifest.children  # children of a manifest that stays
            if saved:
                doomed -= saved
                changed = True
        for digest in list(doomed):
            subject = held[digest].subject
            if subject is not None and subject in held and subject not in doomed:
                doomed.discard(digest)
                changed = True
    # Parents and subjects first (Kahn's order; content addressing admits no cycle).
    waiting: dict[str, int] = {digest: 0 for digest in doomed}
    after: dict[str, list[str]] = {digest: [] for digest in doomed}
    for digest in doomed:
        manifest = held[digest]
        for child in manifest.children & doomed:
            after[digest].append(child)
            waiting[child] += 1
        if manifest.subject is not None and manifest.subject in doomed:
            after[manifest.subject].append(digest)
            waiting[digest] += 1
    ready = sorted((digest for digest, count in waiting.items() if count == 0), reverse=True)
    ordered: list[str] = []
    while ready:
        digest = ready.pop()
        ordered.append(digest)
        for other in sorted(after[digest], reverse=True):
            waiting[other] -= 1
            if waiting[other] == 0:
                ready.append(other)
    return ordered


# --- the rules pages' use cases ------------------------------------------------------------------------------------


class TagRuleStore(Protocol):
    def rules_of(self, namespace: str, kind: RuleKind | None = None) -> list[TagRule]:
        """The namespace's rules (of `kind` only, when given), oldest first."""
        ...

    def add(self, rule: TagRule) -> TagRule:
        """Store a new rule; it as stored (with its id)."""
        ...

    def remove(self, namespace: str, rule_id: int) -> TagRule | None:
        """Delete a rule of the namespace; it as it was, or None when the namespace has no such rule."""
        ...


class RuleService:
    """Adding and removing rules: a namespace's admins (and administrators) only (`may_manage_namespace`)."""

    def __init__(self, store: TagRuleStore, access: Access, clock: Clock) -> None:
        self.store = store
        self.access = access
        self.clock = clock

    def _check(self, account: Account | None, namespace: str) -> None:
        if not may_manage_namespace(self.access, account, namespace):
            raise Denied(f"only the admins of {namespace} may change its rules")

    def add(self, account: Account | None, namespace: str, form: RuleForm) -> TagRule:
        self._check(account, namespace)
        rule = parse_rule(namespace, form)
        if len(self.store.rules_of(namespace)) >= MAX_RULES_PER_NAMESPACE:
            raise InvalidInput(f"a namespace has at most {MAX_RULES_PER_NAMESPACE} rules: remove one first")
        return self.store.add(
            TagRule(
                rule.namespace,
                rule.repository,
                rule.kind,
                rule.pattern,
                rule.keep_newest,
                rule.keep_days,
                rule.untagged_days,
                created_at=self.clock.now(),
                created_by=account.username if account is not None else None,
            )
        )

    def remove(self, account: Account | None, namespace: str, rule_id: int) -> TagRule:
        self._check(account, namespace)
        removed = self.store.remove(namespace, rule_id)
        if removed is None:
            raise RuleUnknown(f"{namespace} has no rule {rule_id}")
        return removed
