import pytest

from stevedore.domain.errors import DigestInvalid, NameInvalid, ReferenceInvalid, TagInvalid, UnsupportedAlgorithm
from stevedore.domain.model import Digest, Reference, RepositoryName, Scope, Tag

SHA256 = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "name", ["a", "library/ubuntu", "team/sub/app", "a.b_c__d-e", "a--b", "x9/y8/z7/w6", "a" * 255]
)
def test_valid_repository_names_parse(name):
    assert RepositoryName.parse(name).value == name


@pytest.mark.parametrize(
    "name", ["", "A", "Team/app", "a/", "/a", "a//b", "-a", "a-", "a_-b", "a...b", "a b", "a/../b", "a" * 256, "é"]
)
def test_invalid_repository_names_are_refused(name):
    with pytest.raises(NameInvalid):
        RepositoryName.parse(name)


def test_namespace_is_the_first_component_of_a_deep_name():
    assert RepositoryName.parse("team/sub/app").namespace == "team"
    assert RepositoryName.parse("app").namespace is None


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_x", "A-b.c_d", "a" * 128])
def test_valid_tags_parse(tag):
    assert str(Tag.parse(tag)) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a/b", "a:b", "a" * 129, "sp ace"])
def test_invalid_tags_are_refused(tag):
    with pytest.raises(TagInvalid):
        Tag.parse(tag)


def test_sha256_and_sha512_digests_parse_and_print_back():
    assert str(Digest.parse(SHA256)) == SHA256
    long = "sha512:" + "0" * 128
    assert Digest.parse(long).algorithm == "sha512"


@pytest.mark.parametrize(
    "text", ["sha256:abc", "sha256:" + "A" * 64, "sha256" + "a" * 64, "", ":" + "a" * 64, "sha512:" + "a" * 64]
)
def test_malformed_digests_are_refused(text):
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


def test_unknown_algorithm_is_unsupported():
    with pytest.raises(UnsupportedAlgorithm):
        Digest.parse("md5:" + "a" * 32)


def test_digest_of_bytes_matches_hashlib():
    assert str(Digest.of(b"")) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_reference_is_a_tag_or_a_digest():
    assert Reference.parse("latest").tag == Tag("latest")
    assert Reference.parse(SHA256).digest == Digest.parse(SHA256)
    with pytest.raises(ReferenceInvalid):
        Reference.parse("-bad")
    with pytest.raises(DigestInvalid):
        Reference.parse("sha256:nothex")


def test_scope_names_may_hold_a_host_and_port():
    scope = Scope.parse("repository:127.0.0.1:5000/team/app:pull,push")
    assert scope.name == "127.0.0.1:5000/team/app"
    assert scope.actions == {"pull", "push"}
    assert str(Scope.parse("registry:catalog:*")) == "registry:catalog:*"
