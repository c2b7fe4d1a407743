"""domain.rules over in-memory fakes: tag patterns, what a rule form accepts, which writes an immutable rule refuses
(through RegistryService's lifecycle), which tags and untagged manifests retention removes, and who may change the
rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stevedore.domain.errors import Denied, InvalidInput
from stevedore.domain.lifecycle import TagChange
from stevedore.domain.manifests import OCI_MANIFEST
from stevedore.domain.model import Digest, Reference, RepositoryName, Tag
from stevedore.domain.namespaces import Right
from stevedore.domain.registry import RegistryService
from stevedore.domain.repository_deletion import RemovedRepository, RepositoryDeletion
from stevedore.domain.rules import (
    ImmutableTags,
    ManifestState,
    RuleForm,
    RuleKind,
    RuleService,
    RuleUnknown,
    TagRule,
    TagState,
    compile_pattern,
    manifests_to_remove,
    parse_rule,
    tags_to_remove,
    untagged_cutoff,
)
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore
from tests.unit.test_namespaces_rules import World
from tests.unit.test_registry_service import image

NOW = datetime(2026, 12, 1, tzinfo=UTC)
APP = RepositoryName.parse("team/app")


def immutable(pattern: str, repository: str | None = None, namespace: str = "team") -> TagRule:
    return TagRule(namespace, repository, RuleKind.IMMUTABLE, pattern)


def retention(pattern: str = "*", repository: str | None = None, **numbers: int) -> TagRule:
    return TagRule("team", repository, RuleKind.RETENTION, pattern, **numbers)


# --- patterns ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tag", "matches"),
    [
        ("v*", "v1", True),
        ("v*", "v1.2.3", True),
        ("v*", "v", True),
        ("v*", "latest", False),
        ("v*", "av1", False),  # the whole tag, not a part of it
        ("*", "anything_at-all.1", True),
        ("v?", "v1", True),
        ("v?", "v12", False),
        ("release-[0-9]*", "release-2", True),
        ("release-[0-9]*", "release-x", False),
        ("[!v]*", "latest", True),
        ("[!v]*", "v1", False),
        ("1.0", "1x0", False),  # a dot is a dot
        ("stable", "stable", True),
        ("stable", "Stable", False),
    ],
)
def test_a_pattern_matches_whole_tags(pattern, tag, matches):
    assert immutable(pattern).matches(tag) is matches


@pytest.mark.parametrize("pattern", ["", "v[1", "v]", "v/1", "v 1", "v[]", "[z-a]", "é", "x" * 129, "v{1,2}"])
def test_a_bad_pattern_is_refused_with_what_is_wrong(pattern):
    with pytest.raises(InvalidInput) as raised:
        compile_pattern(pattern)
    assert raised.value.message


def test_a_rule_covers_its_namespace_or_its_repository_only():
    assert immutable("*").covers("team/app") and immutable("*").covers("team") and immutable("*").covers("team/a/b")
    assert not immutable("*").covers("teammate/app") and not immutable("*").covers("other/app")
    assert immutable("*", "team/app").covers("team/app") and not immutable("*", "team/app").covers("team/web")


# --- the form ------------------------------------------------------------------------------------------------------


def test_a_valid_retention_form_becomes_a_rule():
    rule = parse_rule("team", RuleForm("retention", " v* ", "team/app", "3", "", "14"))
    assert rule == TagRule("team", "team/app", RuleKind.RETENTION, "v*", 3, None, 14)
    assert rule.describe() == (
        "retention v* on the repository team/app: keep the 3 newest; remove untagged manifests after 14 days"
    )


@pytest.mark.parametrize(
    ("form", "said"),
    [
        (RuleForm("sticky", "v*"), "unknown kind"),
        (RuleForm("immutable", "v["), "does not close"),
        (RuleForm("immutable", "v*", "other/app"), "not in the namespace team"),
        (RuleForm("immutable", "v*", "Team/App"), "not a repository name"),
        (RuleForm("immutable", "v*", keep_newest="3"), "takes no retention numbers"),
        (RuleForm("retention", "v*"), "needs at least one"),
        (RuleForm("retention", "v*", keep_newest="-1"), "cannot be negative"),
        (RuleForm("retention", "v*", keep_days="1.5"), "whole number"),
        (RuleForm("retention", "v*", untagged_days="99999999"), "at most"),
    ],
)
def test_a_bad_form_is_refused_with_a_clear_message(form, said):
    with pytest.raises(InvalidInput) as raised:
        parse_rule("team", form)
    assert said in raised.value.message


# --- immutable tags ------------------------------------------------------------------------------------------------


class Rules:
    """The rules a request reads, counting reads."""

    def __init__(self, *rules: TagRule) -> None:
        self.rules = list(rules)
        self.reads = 0

    def immutable_of(self, namespace: str) -> list[TagRule]:
        self.reads += 1
        return [r for r in self.rules if r.namespace == namespace and r.kind is RuleKind.IMMUTABLE]


def registry(*rules: TagRule) -> tuple[RegistryService, InMemoryRegistryStore, Rules]:
    store = InMemoryRegistryStore()
    known = Rules(*rules)
    service = RegistryService(store, InMemoryBlobStore(), FixedClock(NOW), lifecycle=ImmutableTags(known.immutable_of))
    for data in (b"{}", b"one", b"two"):
        for name in (APP, RepositoryName.parse("team/web")):
            service.push_blob(name, Digest.of(data), [data])
    return service, store, known


def push(service: RegistryService, reference: str, body: bytes, name: RepositoryName = APP) -> None:
    service.put_manifest(name, Reference.parse(reference), body, OCI_MANIFEST, pushed_by="ada")


ONE, TWO = image(layers=(b"one",)), image(layers=(b"two",))


def test_a_push_over_an_immutable_tag_is_refused_naming_the_tag_and_the_rule():
    service, _store, _ = registry(immutable("v*"))
    push(service, "v1", ONE)
    with pytest.raises(Denied) as raised:
        push(service, "v1", TWO)
    assert raised.value.message == (
        "tag v1 of team/app is immutable (rule v* on the namespace team): it cannot be pushed over with another "
        "manifest"
    )


def test_new_matching_tags_other_tags_and_the_same_manifest_again_are_allowed():
    service, store, known = registry(immutable("v*"))
    push(service, "v1", ONE)
    push(service, "v2", TWO)  # a new tag
    push(service, "v1", ONE)  # the same manifest again: nothing changes, nothing is asked
    push(service, "latest", ONE)
    push(service, "latest", TWO)  # not matching: moves freely
    assert store.tags["team/app"] == {"v1": Digest.of(ONE), "v2": Digest.of(TWO), "latest": Digest.of(TWO)}
    assert known.reads == 1  # asked once, when `latest` moved (new tags ask nothing)


def test_deleting_an_immutable_tag_or_its_manifest_is_refused():
    service, _store, _ = registry(immutable("v*"))
    push(service, "v1", ONE)
    with pytest.raises(Denied, match="cannot be deleted"):
        service.delete_manifest(APP, Reference(tag=Tag("v1")), "ada")
    service, _store, _ = registry(immutable("v*"))  # the fake does not roll back: a fresh one
    push(service, "v1", ONE)
    with pytest.raises(Denied, match="tag v1 of team/app is immutable"):
        service.delete_manifest(APP, Reference(digest=Digest.of(ONE)), "ada")


def test_a_restore_over_an_immutable_tag_is_refused_but_putting_back_a_deleted_one_is_not():
    service, store, _ = registry(immutable("v*"))
    push(service, "v1", ONE)
    push(service, str(Digest.of(TWO)), TWO)
    with pytest.raises(Denied, match="cannot be put back on another manifest"):
        service.restore_tag(APP, Tag("v1"), Digest.of(TWO), "ada")
    del store.tags["team/app"]["v1"]  # as if deleted before the rule existed
    service.restore_tag(APP, Tag("v1"), Digest.of(TWO), "ada")


def test_a_rule_on_another_repository_or_namespace_does_not_apply():
    service, store, _ = registry(immutable("v*", "team/web"), immutable("*", namespace="other"))
    push(service, "v1", ONE)
    push(service, "v1", TWO)
    service.delete_manifest(APP, Reference(tag=Tag("v1")), "ada")
    assert "v1" not in store.tags["team/app"]
    web = RepositoryName.parse("team/web")
    push(service, "v1", ONE, web)
    with pytest.raises(Denied, match="rule v\\* on the repository team/web"):
        push(service, "v1", TWO, web)


def test_the_hook_alone_decides_by_the_change():
    guard = ImmutableTags(Rules(immutable("v*")).immutable_of)
    change = TagChange(APP, "v1", Digest.of(ONE), Digest.of(TWO), "ada", NOW)
    with pytest.raises(Denied):
        guard.before_tag_change(change)
    guard.before_tag_change(TagChange(APP, "v1", None, Digest.of(TWO), "ada", NOW))  # new
    guard.before_tag_change(TagChange(APP, "latest", Digest.of(ONE), None, "ada", NOW))  # not matching


class Deletions:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete_repository(self, name: RepositoryName) -> RemovedRepository:
        self.deleted.append(name.value)
        return RemovedRepository([], [])


def test_deleting_a_repository_that_holds_an_immutable_tag_is_refused():
    world = World()
    boss = world.user("boss", admin=True)
    store = Deletions()
    guard = ImmutableTags(Rules(immutable("v*", "team/app")).immutable_of)
    tags = {"team/app": ["latest", "v1", "v2"], "team/web": ["v1"]}

    def refuse(name: RepositoryName) -> None:
        guard.refuse_repository_deletion(name, lambda: tags[name.value])

    deletion = RepositoryDeletion(store, world.access(), refuse)
    with pytest.raises(Denied) as raised:
        deletion.delete(boss, APP)
    assert raised.value.message == (
        "the repository team/app holds 2 immutable tags (v1, v2; rule v* on the repository team/app): remove the "
        "rule to delete the repository"
    )
    deletion.delete(boss, RepositoryName.parse("team/web"))
    assert store.deleted == ["team/web"]


# --- retention: tags -----------------------------------------------------------------------------------------------


def tagged(*names_ages: tuple[str, int]) -> list[TagState]:
    return [TagState(name, f"sha256:{i:064x}", NOW - timedelta(days=age)) for i, (name, age) in enumerate(names_ages)]


def removed(rules: list[TagRule], tags: list[TagState], repository: str = "team/app") -> list[str]:
    return [state.tag for state in tags_to_remove(rules, repository, tags, NOW)]


TAGS = tagged(("v1", 40), ("v2", 30), ("v3", 20), ("v4", 10), ("v5", 1), ("latest", 50))


def test_keep_newest_keeps_the_n_most_recently_pushed_matching_tags():
    assert removed([retention("v*", keep_newest=2)], TAGS) == ["v1", "v2", "v3"]  # `latest` does not match


def test_keep_days_keeps_those_pushed_within_n_days():
    assert removed([retention("v*", keep_days=15)], TAGS) == ["v1", "v2", "v3"]
    assert removed([retention("*", keep_days=25)], TAGS) == ["latest", "v1", "v2"]


def test_with_both_a_tag_either_keeps_stays():
    assert removed([retention("v*", keep_newest=1, keep_days=25)], TAGS) == ["v1", "v2"]


def test_a_tag_any_rule_keeps_stays_and_immutable_tags_are_never_removed():
    rules = [retention("*", keep_newest=1), retention("v*", keep_newest=3), immutable("v1")]
    assert removed(rules, TAGS) == ["latest", "v2"]


def test_rules_of_other_repositories_and_untagged_only_rules_remove_no_tag():
    assert removed([retention("*", "team/web", keep_newest=0)], TAGS) == []
    assert removed([retention("*", untagged_days=1)], TAGS) == []


def test_keep_newest_breaks_ties_by_name():
    same = tagged(("b", 1), ("a", 1), ("c", 1))
    assert removed([retention("*", keep_newest=2)], same) == ["c"]


# --- retention: untagged manifests -----------------------------------------------------------------------------------


def m(digest: str, age: int, tagged: bool = False, children: tuple[str, ...] = (), subject: str | None = None):
    return ManifestState(digest, NOW - timedelta(days=age), tagged, frozenset(children), subject)


def test_untagged_cutoff_takes_the_longest_of_the_covering_rules():
    rules = [retention(untagged_days=7), retention(untagged_days=30), retention("*", "team/web", untagged_days=1)]
    assert untagged_cutoff(rules, "team/app", NOW) == NOW - timedelta(days=30)
    assert untagged_cutoff([retention(keep_newest=1)], "team/app", NOW) is None


def test_old_untagged_manifests_go_but_not_young_tagged_or_recently_named_ones():
    manifests = [m("old", 40), m("young", 2), m("tagged", 40, tagged=True), m("in-history", 40)]
    assert manifests_to_remove(manifests, NOW - timedelta(days=30), {"in-history"}) == ["old"]


def test_the_children_of_a_kept_index_stay_and_a_dead_index_goes_with_its_children_parent_first():
    manifests = [
        m("kept-index", 40, tagged=True, children=("child-a",)),
        m("child-a", 40),
        m("dead-index", 40, children=("child-b", "child-c")),
        m("child-b", 40),
        m("child-c", 5),  # young: it stays, so does nothing else
    ]
    assert manifests_to_remove(manifests, NOW - timedelta(days=30), set()) == ["dead-index", "child-b"]


def test_a_referrer_stays_while_its_subject_stays_and_goes_after_it():
    manifests = [
        m("image", 40, tagged=True),
        m("signature", 40, subject="image"),
        m("old-image", 40),
        m("old-signature", 40, subject="old-image"),
        m("orphan-signature", 40, subject="never-here"),  # a subject the repository does not hold
    ]
    assert manifests_to_remove(manifests, NOW - timedelta(days=30), set()) == [
        "old-image",
        "old-signature",
        "orphan-signature",
    ]


def test_a_child_of_an_index_kept_by_history_stays():
    manifests = [m("index", 40, children=("child",)), m("child", 40)]
    assert manifests_to_remove(manifests, NOW - timedelta(days=30), {"index"}) == []


def test_an_index_and_its_child_come_parent_first_whatever_their_names():
    manifests = [m("a-child", 40), m("z-index", 40, children=("a-child",))]
    assert manifests_to_remove(manifests, NOW - timedelta(days=30), set()) == ["z-index", "a-child"]


# --- the pages' use cases ------------------------------------------------------------------------------------------


class InMemoryTagRuleStore:
    def __init__(self) -> None:
        self.rules: list[TagRule] = []

    def rules_of(self, namespace: str, kind: RuleKind | None = None) -> list[TagRule]:
        return [r for r in self.rules if r.namespace == namespace and (kind is None or r.kind is kind)]

    def add(self, rule: TagRule) -> TagRule:
        stored = TagRule(**{**rule.__dict__, "id": len(self.rules) + 1})
        self.rules.append(stored)
        return stored

    def remove(self, namespace: str, rule_id: int) -> TagRule | None:
        for rule in self.rules:
            if rule.namespace == namespace and rule.id == rule_id:
                self.rules.remove(rule)
                return rule
        return None


def test_namespace_admins_and_administrators_add_and_remove_rules_others_are_denied():
    world = World()
    for name in ("ada", "pete", "paula"):
        world.user(name)
    boss = world.user("boss", admin=True)
    world.team(ada=Right.ADMIN, pete=Right.PUSH, paula=Right.PULL)
    store = InMemoryTagRuleStore()
    service = RuleService(store, world.access(), FixedClock(NOW))
    ada, pete, paula = (world.accounts.by_username(n) for n in ("ada", "pete", "paula"))
    rule = service.add(ada, "team", RuleForm("immutable", "v*"))
    assert (rule.id, rule.created_by, rule.created_at) == (1, "ada", NOW)
    for who in (pete, paula, None):
        with pytest.raises(Denied):
            service.add(who, "team", RuleForm("immutable", "x*"))
        with pytest.raises(Denied):
            service.remove(who, "team", 1)
    assert store.rules == [rule]
    with pytest.raises(RuleUnknown):
        service.remove(boss, "other", 1)  # a rule of another namespace is not this one's
    assert service.remove(boss, "team", 1) == rule
    assert store.rules == []
