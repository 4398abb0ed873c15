import uuid

from ccfast import uuids


def test_uuid4_strings_are_version_4_variant_rfc4122_and_distinct():
    seen = set()
    for _ in range(3 * 256 + 5):  # across pool refills
        text = uuids.uuid4()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 3 * 256 + 5
